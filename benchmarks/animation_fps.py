"""Frames per second of batched animation against one frame at a time (random weights).

    python benchmarks/animation_fps.py --config configs/vox256.py --size 256 --frames 8 --chunk 8 --repeats 1 --out fps.json
    python benchmarks/animation_fps.py --config configs/vox256.py --size 256 --isolate --dtype bfloat16

Three ways to animate the same `--frames` driving frames (relative mode by default):
  batched       mraa_jax.evaluation.animate: source encoded once, frames in jitted chunks of --chunk
  chunk_1       the same pipeline with chunks of one frame (one call per frame, source still encoded once)
  per_frame     the original demo's loop: per frame, region predictor then the whole generator (source
                re-encoded every frame), the result copied to the host
Each is warmed up (--warmup calls on the full clip) and then timed --repeats times; the median is
reported (median_s, frames_per_s). Compilation happens in the first warm-up call: first_call_s is
that call, compile_s = first_call_s - median_s (compilation plus first-call overheads). Without
--isolate the methods share one process, so a method can reuse programs compiled by the one before
it (batched and chunk_1 share the region predictor and the encoder) and the peak memory
(peak_rss_mib: the process's peak resident set; device_peak_mib on GPU: memory_stats()'s
peak_bytes_in_use) accumulates; with --isolate each method runs in a fresh subprocess, so its
compile time and peaks are its own. --dtype sets model_params.compute_dtype. Prints a table and
JSON (written to --out too).
Like the launch scripts, the measured processes start with XLA:CPU's memory-minimising scheduler
and glibc's huge-page tunable (mraa_jax.process_tuning.tune_process; glibc_hugetlb says whether
the tunable was on; MRAA_JAX_HUGE_PAGES=0 turns it off, and
XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true keeps XLA's default scheduler).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from _measure import cpu_description, emit, peak_memory, run_isolated, table

from mraa_jax.process_tuning import tune_process

METHODS = ("batched", "chunk_1", "per_frame")


def _time(fn, warmup: int, repeats: int) -> dict:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "first_call_s": round(first, 3),
        "compile_s": round(first - median, 3),
        "times_s": [round(t, 3) for t in times],
        "median_s": round(median, 3),
    }


def measure(args, names) -> dict:
    """Time the methods `names` in this process."""
    import jax
    import numpy as np

    from mraa_jax import evaluation
    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA

    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    config.model_params.compute_dtype = args.dtype
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
    for name in names:
        timing = _time(methods[name], max(args.warmup, 1), args.repeats)
        timing["frames_per_s"] = round(args.frames / timing["median_s"], 3)
        timing.update(peak_memory(), device=str(jax.devices()[0]), jax=jax.__version__)
        results[name] = timing
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--mode", default="relative")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed calls on the full clip (at least 1: compilation)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"), help="model_params.compute_dtype"
    )
    parser.add_argument(
        "--isolate", action="store_true", help="each method in a fresh subprocess (own compile time and peak memory)"
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--json_line", action="store_true", help=argparse.SUPPRESS
    )  # internal: one JSON line (isolated runs)
    args = parser.parse_args()

    names = args.methods.split(",")
    for name in names:
        if name not in METHODS:
            parser.error(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    if args.json_line:
        print(json.dumps(measure(args, names)))
        return
    if args.isolate:
        forwarded = [
            "--config",
            args.config,
            "--size",
            str(args.size),
            "--frames",
            str(args.frames),
            "--chunk",
            str(args.chunk),
            "--mode",
            args.mode,
            "--warmup",
            str(args.warmup),
            "--repeats",
            str(args.repeats),
            "--dtype",
            args.dtype,
            "--json_line",
        ]
        results = {name: run_isolated(__file__, forwarded + ["--methods", name])[name] for name in names}
    else:
        results = measure(args, names)
    first = next(iter(results.values()))
    report = {
        "config": args.config,
        "size": args.size,
        "frames": args.frames,
        "chunk": args.chunk,
        "mode": args.mode,
        "compute_dtype": args.dtype,
        "isolated": args.isolate,
        "warmup_calls": args.warmup,
        "repeats": args.repeats,
        "statistic": "median over repeats, full clip per call",
        "results": results,
        "speedup_batched_vs_per_frame": round(results["per_frame"]["median_s"] / results["batched"]["median_s"], 2)
        if "batched" in results and "per_frame" in results
        else None,
        "device": first["device"],
        "cpus": os.cpu_count(),
        **cpu_description(),
        "jax": first["jax"],
    }
    cpu = f"CPU: {report['cpu']}; {' '.join(report['vector_extensions'] or [])}\n"
    emit(
        report,
        cpu + table(results, ["compile_s", "median_s", "frames_per_s", "peak_rss_mib", "device_peak_mib"]),
        args.out,
    )


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
