"""Latency of streaming animation: milliseconds per `stream.push(frame)` (random weights).

    python benchmarks/stream_latency.py --config configs/vox256.py --size 256 --warmup 3 --pushes 20

`model.stream(source, mode)` encodes a random source once; the first push waits for that and
compiles the per-frame program (first_push_s); after --warmup pushes in all, --pushes more are timed one by one, each
from a uint8 frame on the host to the animated float32 frame back on the host (median_ms, also
min and max). The process starts as the launch scripts do (mraa_jax.process_tuning.tune_process).
Prints a line and a JSON report (written to --out too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _measure import cpu_description, emit, peak_memory

from mraa_jax.process_tuning import tune_process


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", default="relative", choices=("standard", "relative", "avd"))
    parser.add_argument("--warmup", type=int, default=3, help="untimed pushes (at least 1: the first compiles)")
    parser.add_argument("--pushes", type=int, default=20, help="timed pushes")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import jax
    import numpy as np

    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA

    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    model = MRAA.random(config)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (max(args.warmup, 1) + args.pushes, args.size, args.size, 3), dtype=np.uint8)
    stream = model.stream(frames[0], args.mode)
    times = []
    for frame in frames:
        start = time.perf_counter()
        stream.push(frame)
        times.append(time.perf_counter() - start)
    timed = [t * 1000 for t in times[max(args.warmup, 1) :]]
    report = {
        "config": args.config,
        "size": args.size,
        "mode": args.mode,
        "warmup_pushes": max(args.warmup, 1),
        "pushes": args.pushes,
        "first_push_s": round(times[0], 3),
        "median_ms": round(statistics.median(timed), 1),
        "min_ms": round(min(timed), 1),
        "max_ms": round(max(timed), 1),
        **peak_memory(),
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        **cpu_description(),
        "jax": jax.__version__,
    }
    summary = (
        f"CPU: {report['cpu']}, {report['cpus']} cores; {' '.join(report['vector_extensions'] or [])}\n"
        f"stream.push ({args.mode}, {args.size}x{args.size}): median {report['median_ms']} ms per frame "
        f"(min {report['min_ms']}, max {report['max_ms']}, {args.pushes} pushes), "
        f"first push {report['first_push_s']} s"
    )
    emit(report, summary, args.out)


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
