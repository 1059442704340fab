"""Frames per second of batched animation against one frame at a time (random weights).

    python benchmarks/animation_fps.py --config configs/vox256.py --size 256 --frames 8 --chunk 8 --repeats 1 --out fps.json

Three ways to animate the same `--frames` driving frames (relative mode by default):
  batched       mraa_jax.evaluation.animate: source encoded once, frames in jitted chunks of --chunk
  chunk_1       the same pipeline with chunks of one frame (one call per frame, source still encoded once)
  per_frame     the original demo's loop: per frame, region predictor then the whole generator (source
                re-encoded every frame), the result copied to the host
Each is warmed up (--warmup calls on the full clip: compilation happens there) and then
timed --repeats times; the median is reported. Prints JSON (and writes it to --out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from mraa_jax import evaluation
from mraa_jax.config import load_config
from mraa_jax.model import MRAA


def _time(fn, warmup: int, repeats: int) -> dict:
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"warmup_s": round(warm, 3), "times_s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--mode", default="relative")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default="batched,chunk_1,per_frame")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    model = MRAA.random(config)
    rng = np.random.default_rng(0)
    source = rng.random((args.size, args.size, 3), np.float32)
    frames = rng.random((args.frames, args.size, args.size, 3), np.float32)
    methods = {
        "batched": lambda: evaluation.animate(model, source, frames, args.mode, chunk_size=args.chunk),
        "chunk_1": lambda: evaluation.animate(model, source, frames, args.mode, chunk_size=1),
        "per_frame": lambda: evaluation.animate_frame_by_frame(model, source, frames, args.mode),
    }
    results = {}
    for name in args.methods.split(","):
        timing = _time(methods[name], args.warmup, args.repeats)
        timing["frames_per_s"] = round(args.frames / timing["median_s"], 3)
        results[name] = timing
        print(name, timing, flush=True)
    report = {
        "config": args.config, "size": args.size, "frames": args.frames, "chunk": args.chunk, "mode": args.mode,
        "warmup_calls": args.warmup, "repeats": args.repeats, "statistic": "median over repeats, full clip per call",
        "results": results,
        "speedup_batched_vs_per_frame": round(results["per_frame"]["median_s"] / results["batched"]["median_s"], 2)
        if "batched" in results and "per_frame" in results else None,
        "device": str(jax.devices()[0]), "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
