"""Training pairs per second of the data pipeline, from 256x256 PNG frame folders.

    python benchmarks/data_throughput.py --videos 16 --frames 60 --size 256 --batch_size 16 --steps 30 --threads 0,2 --workers 0,2

Makes `--videos` frame folders (the real tests/fixtures/data/driving.mp4 resized, each video a
different stretch and some mirrored; synthetic figures if that file is missing), builds them
into the TFDS array_record format (timed), then times `training_pairs` (the original's
augmentations on, id_sampling off) for each --threads / --workers setting: `--steps`
batches after 3 warm-up batches. Prints JSON. Runs under absl.app.run because grain's
worker processes need parsed absl flags.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.DEFINE_integer("videos", 16, "frame folders to make")
flags.DEFINE_integer("frames", 60, "frames per video")
flags.DEFINE_integer("size", 256, "frame side in pixels")
flags.DEFINE_integer("batch_size", 16, "pairs per batch")
flags.DEFINE_integer("steps", 30, "timed batches per setting")
flags.DEFINE_list("threads", ["0", "2"], "grain read threads settings to time")
flags.DEFINE_list("workers", ["0"], "grain worker process settings to time")
flags.DEFINE_string("workdir", None, "where to put the folders and the dataset (default: a temporary folder)")
F = flags.FLAGS


def make_folders(root: Path, videos: int, frames: int, size: int) -> str:
    import numpy as np
    from PIL import Image

    from mraa_jax.data.readers import read_video

    driving = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data" / "driving.mp4"
    if driving.is_file():
        base, content = read_video(driving, frame_shape=(size, size)), "driving.mp4"
    else:
        from mraa_jax.data.figures import make_clip

        base, content = make_clip(0, "train", 0, 133, size).frames, "synthetic"
    for v in range(videos):
        folder = root / "train" / f"id{v % 4}#{v:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        start = (v * 7) % max(1, len(base) - frames)
        clip = base[start : start + frames]
        if v % 2:
            clip = clip[:, :, ::-1]
        for t, frame in enumerate(clip):
            Image.fromarray(np.ascontiguousarray(frame)).save(folder / f"{t:07d}.png", compress_level=1)
    test = root / "test" / "test#000"
    test.mkdir(parents=True, exist_ok=True)
    Image.fromarray(base[0]).save(test / "0000000.png")
    return content


def main(argv):
    del argv
    from mraa_jax.data import build_video_dataset, open_split, training_pairs

    work = Path(F.workdir) if F.workdir else Path(tempfile.mkdtemp(prefix="data_throughput_"))
    root = work / "folders"
    start = time.perf_counter()
    content = make_folders(root, F.videos, F.frames, F.size)
    make_s = time.perf_counter() - start
    summary = build_video_dataset(root, work / "tfds")
    source = open_split(summary.dataset_dir, "train")
    results = []
    for workers in (int(w) for w in F.workers):
        for threads in (int(t) for t in F.threads):
            it = training_pairs(
                source, F.batch_size, seed=0, num_repeats=1000, shard=(0, 1), worker_count=workers, num_threads=threads
            )
            for _ in range(3):
                next(it)
            t0 = time.perf_counter()
            for _ in range(F.steps):
                batch = next(it)
            seconds = time.perf_counter() - t0
            it.close()
            results.append(
                {
                    "workers": workers,
                    "threads": threads,
                    "pairs_per_s": round(F.steps * F.batch_size / seconds, 1),
                    "batch_ms": round(1000 * seconds / F.steps, 1),
                }
            )
    print(
        json.dumps(
            {
                "what": "training_pairs from PNG frame folders built to TFDS array_record, augmentation on",
                "content": content,
                "videos": F.videos,
                "frames_per_video": F.frames,
                "size": F.size,
                "batch_size": F.batch_size,
                "steps": F.steps,
                "batch_shape": list(batch["source"].shape),
                "make_folders_s": round(make_s, 1),
                "build_s": round(summary.seconds, 2),
                "dataset_mb": round(sum(f.stat().st_size for f in summary.dataset_dir.iterdir()) / 2**20, 1),
                "results": results,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    app.run(main)
