"""Held-out reconstruction during training: how far the model is from copying the source frame.

Every `every_steps` optimiser steps the tracker reconstructs a few held-out videos
(source = frame 0, driving = every frame, as the evaluation does) and records the
reconstruction L1 next to the L1 of predicting the source frame for every frame (no
motion at all). Their ratio falls below 1 once the model moves parts; the main job
plots it against training minutes. Time spent here is not counted as training time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from mraa_jax.model import MRAA


def copy_source_l1(videos: np.ndarray) -> float:
    """Mean |frame - first frame| over all frames of (N, T, H, W, C) videos: the no-motion baseline."""
    videos = np.asarray(videos, np.float32)
    return float(np.mean(np.abs(videos - videos[:, :1])))


class HeldOutTracker:
    """A training hook `(state, step, metrics) -> scalars to log` for held-out L1 / copy-source L1.

    Records are appended to `path` (JSON lines: step, training_seconds, l1, copy_l1, ratio,
    and the mean training losses since the previous record). A resumed run reads the
    records already there and counts its training time on from the last one.
    """

    def __init__(self, config, videos: np.ndarray, every_steps: int, path):
        self.videos = np.asarray(videos, np.float32)
        if self.videos.ndim != 5:
            raise ValueError(f"held-out videos must be (N, T, H, W, C), got shape {self.videos.shape}")
        self.every_steps = int(every_steps)
        self.path = Path(path)
        self.copy_l1 = copy_source_l1(self.videos)
        self.model = MRAA(config, {})
        self.records: list[dict] = read_records(self.path) if self.path.exists() else []
        self._losses: list[dict] = []  # each step's metrics since the last record, still on the device
        self._start = time.perf_counter() - (self.records[-1]["training_seconds"] if self.records else 0.0)
        self._paused = 0.0

    def training_seconds(self) -> float:
        return time.perf_counter() - self._start - self._paused

    def heldout_l1(self, variables: dict) -> float:
        """Mean reconstruction L1 over all frames of the held-out videos."""
        from mraa_jax.evaluation import inference

        self.model.variables = variables
        errors = []
        for video in self.videos:
            prediction = inference.run_frames(
                self.model, video[0], video, mode="reconstruction", chunk_size=video.shape[0]
            )["prediction"]
            errors.append(np.mean(np.abs(prediction - video)))
        return float(np.mean(errors))

    def __call__(self, state, step: int, metrics: dict) -> dict[str, float]:
        """Called before the first step (empty metrics) and after every step (its metrics on the device)."""
        if metrics:
            self._losses.append(metrics)
        if step % self.every_steps != 0:
            return {}
        record = self.record(state, step)
        return {"heldout/l1": record["l1"], "heldout/ratio_to_copy_source": record["ratio"]}

    def record(self, state, step: int) -> dict:
        """Evaluate now and append a record, unless this step already has one."""
        if self.records and self.records[-1]["step"] == step:
            return self.records[-1]
        jax.block_until_ready(state)  # the steps dispatched so far count as training time
        pause = time.perf_counter()
        seconds = self.training_seconds()
        params, stats = jax.device_get((state.params, state.batch_stats))
        l1 = self.heldout_l1({n: {"params": params[n], "batch_stats": stats[n]} for n in params})
        record = {
            "step": int(step),
            "training_seconds": round(seconds, 2),
            "l1": l1,
            "copy_l1": self.copy_l1,
            "ratio": l1 / self.copy_l1,
            "train_losses": mean_losses(self._losses),
        }
        self._losses = []
        self.records.append(record)
        if jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        self._paused += time.perf_counter() - pause
        return record


def mean_losses(metrics: list[dict]) -> dict[str, float]:
    """Each loss's mean over the steps whose update was not skipped, fetched in one transfer."""
    kept = [m for m in jax.device_get(metrics) if not m.get("skipped")]
    return {k: float(np.mean([m[k] for m in kept])) for k in kept[0] if k != "skipped"} if kept else {}


def read_records(path) -> list[dict]:
    """The records a tracker appended to `path`."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
