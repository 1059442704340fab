"""Subprocess worker for the resume test: trains the tiny config up to --max_steps in --workdir.

    python tests/training_worker.py --workdir DIR --max_steps 6

A run in a workdir that holds checkpoints resumes from the latest one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's mraa_jax, whatever else is installed
sys.path.insert(0, str(REPO / "tests"))

from conftest import ArrayPairs, tiny_training_config, tiny_videos  # noqa: E402

from mraa_jax.training.trainer import train_reconstruction  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--max_steps", type=int, required=True)
    args = parser.parse_args()
    config = tiny_training_config()
    train_reconstruction(
        config,
        args.workdir,
        ArrayPairs(tiny_videos(), config.train_params.batch_size),
        steps_in_epoch=100,
        max_steps=args.max_steps,
    )  # no epoch end: no picture to compile


if __name__ == "__main__":
    main()
