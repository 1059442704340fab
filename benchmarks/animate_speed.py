"""Compile time and frames per second of `MRAA.animate` with random weights.

    python benchmarks/animate_speed.py --config configs/vox256.py --size 256 --frames 32 --chunk 8

Prints JSON: compile seconds (first call on `--chunk` frames, compile plus one run), then
the median over `--repeats` timed calls on `--frames` frames, after that warm-up.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import numpy as np

from mraa_jax.config import load_config
from mraa_jax.model import MRAA


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--mode", default="relative")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    model = MRAA.random(config)
    rng = np.random.default_rng(0)
    source = rng.random((args.size, args.size, 3), np.float32)
    frames = rng.random((args.frames, args.size, args.size, 3), np.float32)

    start = time.perf_counter()
    model.animate(source, frames[: args.chunk], mode=args.mode, chunk_size=args.chunk).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.animate(source, frames, mode=args.mode, chunk_size=args.chunk).block_until_ready()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({
        "config": args.config, "size": args.size, "frames": args.frames, "chunk": args.chunk, "mode": args.mode,
        "compile_plus_first_call_s": round(compile_s, 2), "median_s": round(median, 3),
        "frames_per_s": round(args.frames / median, 3), "s_per_frame": round(median / args.frames, 3),
        "device": str(jax.devices()[0]), "cpus": __import__("os").cpu_count(), "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
