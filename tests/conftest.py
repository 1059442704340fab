"""Shared test fixtures: paths to the reference set in tests/fixtures and the converted fixture model.

Also gives the whole session (and the subprocesses it starts) one XLA compilation cache:
many tests compile the same tiny training step, and compiling it once saves minutes on
2 cores. Set JAX_COMPILATION_CACHE_DIR yourself to keep or inspect it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # before any test imports jax
    _cache = tempfile.mkdtemp(prefix="mraa-jax-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache

REPO = Path(__file__).resolve().parents[1]
# The reference set (tests/fixtures/README.md): the original's outputs, the published state-dict
# manifests, and media that may be redistributed. MRAA_JAX_FIXTURES points the tests at another
# set of the same layout (for example an older one) without editing the repository.
FIXTURES = Path(os.environ.get("MRAA_JAX_FIXTURES", REPO / "tests" / "fixtures"))
FIXTURE = FIXTURES / "mraa_tiny"
MEDIA = FIXTURES / "data"
DRIVING_VIDEO = MEDIA / "driving.mp4"
SOURCE_IMAGE = MEDIA / "source.png"


def nhwc(x: np.ndarray) -> np.ndarray:
    """The original's NCHW arrays (any leading dims) as NHWC."""
    return np.moveaxis(x, -3, -1)


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    assert FIXTURE.is_dir(), f"reference fixtures not found at {FIXTURE}"
    return FIXTURE


@pytest.fixture(scope="session")
def fixture_inputs(fixture_dir):
    return dict(np.load(fixture_dir / "inputs.npz"))


@pytest.fixture(scope="session")
def fixture_outputs(fixture_dir):
    return dict(np.load(fixture_dir / "outputs.npz"))


@pytest.fixture(scope="session")
def fixture_train(fixture_dir):
    return dict(np.load(fixture_dir / "train_mode.npz"))


@pytest.fixture(scope="session")
def converted_dir(fixture_dir, tmp_path_factory) -> Path:
    """The fixture checkpoint converted by the command-line converter."""
    pytest.importorskip("torch", reason="the converter needs the `convert` extra (torch)")
    from mraa_jax.convert import main

    output = tmp_path_factory.mktemp("converted") / "mraa_tiny"
    code = main(
        [
            "--config",
            str(fixture_dir / "config.yaml"),
            "--checkpoint",
            str(fixture_dir / "checkpoint.pth"),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    return output


@pytest.fixture(scope="session")
def fixture_model(converted_dir):
    import mraa_jax

    return mraa_jax.load(converted_dir)


class ArrayPairs:
    """A deterministic stand-in for the data pipeline: pairs of frames of in-memory videos.

    videos: (N, T, H, W, C) float32. Batch `i` depends only on (seed, i), so a saved
    position resumes the same sequence.
    """

    def __init__(self, videos: np.ndarray, batch_size: int, seed: int = 0):
        self.videos, self.batch_size, self.seed, self.position = videos, batch_size, seed, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        rng = np.random.default_rng([self.seed, self.position])
        self.position += 1
        video = rng.integers(0, len(self.videos), self.batch_size)
        frames = np.sort(rng.integers(0, self.videos.shape[1], (self.batch_size, 2)), axis=1)
        return {"source": self.videos[video, frames[:, 0]], "driving": self.videos[video, frames[:, 1]]}

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])


def tiny_training_config():
    """The fixture's tiny architecture on 32x32 frames, L1 instead of the perceptual loss."""
    from mraa_jax.config import load_config

    config = load_config(FIXTURE / "config.yaml")
    config.dataset_params.frame_shape = [32, 32, 3]
    tp = config.train_params
    tp.batch_size, tp.num_epochs, tp.epoch_milestones = 4, 100, [90]
    tp.loss_weights.l1 = 1.0
    tp.checkpoint_every_steps = 1
    ap = config.train_avd_params
    ap.batch_size, ap.num_epochs, ap.epoch_milestones = 4, 100, [90]
    return config


def tiny_videos(num_videos: int = 4, num_frames: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    """(N, T, size, size, 3) clips of a coloured square moving over a smooth background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    videos = np.zeros((num_videos, num_frames, size, size, 3), np.float32)
    for v in range(num_videos):
        background = np.stack([xx, yy, 1 - xx], -1) * rng.uniform(0.3, 0.7)
        colour = rng.uniform(0.6, 1.0, 3)
        start, velocity = rng.uniform(4, size - 12, 2), rng.uniform(-2, 2, 2)
        for t in range(num_frames):
            x, y = (start + velocity * t).astype(int)
            videos[v, t] = background
            videos[v, t, y : y + 8, x : x + 8] = colour
    return videos
