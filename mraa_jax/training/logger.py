"""Training logs: per-epoch means in log.txt, TensorBoard scalars and images, PNG grids."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import imageio.v3 as iio
import numpy as np


class TrainingLogger:
    """Writes into `workdir`: log.txt, TensorBoard events (tensorboard/), train-vis/<epoch>.png.

    Only process 0 should hold one with `enabled=True`; the others log nothing.
    """

    def __init__(self, workdir, enabled: bool = True):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            (self.workdir / "train-vis").mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.workdir / "tensorboard"))

    def step(self, step: int, metrics: dict[str, float]) -> None:
        """Record one step's losses (host floats)."""
        if not self.enabled:
            return
        for name, value in metrics.items():
            self._sums[name] += value
            self._writer.add_scalar(f"loss/{name}", value, step)
        self._count += 1

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Record other scalars (e.g. held-out scores) in TensorBoard."""
        if not self.enabled:
            return
        for name, value in values.items():
            self._writer.add_scalar(name, value, step)

    def note(self, text: str) -> None:
        """Append one line of text to log.txt (e.g. a skipped step)."""
        if self.enabled:
            with open(self.workdir / "log.txt", "a") as log:
                log.write(text + "\n")

    def end_epoch(self, epoch: int, step: int, picture: np.ndarray | None = None, stage: str = "") -> dict[str, float]:
        """Append the epoch's mean losses to log.txt (the original's format) and save its picture."""
        means = {name: total / max(self._count, 1) for name, total in self._sums.items()}
        self._sums.clear()
        self._count = 0
        if not self.enabled:
            return means
        text = "; ".join(f"{name} - {value:.5f}" for name, value in sorted(means.items()))
        with open(self.workdir / "log.txt", "a") as log:
            log.write(f"{stage}{epoch:05d}) {text}\n")
        if picture is not None:
            iio.imwrite(self.workdir / "train-vis" / f"{stage}{epoch:05d}-rec.png", picture)
            self._writer.add_image("train-vis", picture, step, dataformats="HWC")
        self._writer.flush()
        return means

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
