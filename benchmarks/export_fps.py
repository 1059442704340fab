"""Frames per second of the exported ONNX `animate` in onnxruntime (CPU) beside the library's, one frame per call.

    python benchmarks/export_fps.py --config configs/vox256.py --size 256 --frames 8 --out export_fps.json

Random weights (MRAA.random) for the config at --size x --size. Three ways to animate the same
--frames driving frames in relative mode, one frame per call, in one process:
  library        mraa_jax.evaluation.animate with chunk_size=1 (the source encoded once)
  exported_jax   the exported `animate` program (mraa_jax.export.pieces), jitted: the source
                 re-encoded in every call, as in the exported files
  onnxruntime    animate.onnx (mraa_jax.export --format onnx) in onnxruntime's CPUExecutionProvider,
                 default session options
Each is warmed up once on the whole clip (compilation, session set-up), then timed --repeats
times; the median is reported. onnx_export_s is the ONNX conversion's time. The process starts
tuned as benchmarks/animation_fps.py's (mraa_jax.process_tuning). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _measure import cpu_description, emit, table

from mraa_jax.process_tuning import tune_process


def _time(fn, repeats: int) -> dict:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"first_call_s": round(first, 3), "median_s": round(median, 3), "times_s": [round(t, 3) for t in times]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import jax
    import numpy as np
    import onnxruntime as ort

    from mraa_jax import evaluation, export
    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA

    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    model = MRAA.random(config)
    rng = np.random.default_rng(0)
    source = rng.random((args.size, args.size, 3), np.float32)
    frames = rng.random((args.frames, args.size, args.size, 3), np.float32)
    relative = np.array(export.MODES.index("relative"), np.int32)  # a 0-d array: onnxruntime takes no NumPy scalars

    pieces = export.pieces(model)
    encode, animate = jax.jit(pieces["encode"][0]), jax.jit(pieces["animate"][0])
    source_params = [np.asarray(x) for x in encode(source[None])]
    reference = [np.asarray(x) for x in encode(frames[:1])]
    params = [*source_params, reference[0], reference[2]]

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        manifest = export.export_model(model, Path(folder) / "onnx", "onnx")
        export_s = time.perf_counter() - start
        session = ort.InferenceSession(str(Path(folder) / "onnx" / "animate.onnx"), providers=["CPUExecutionProvider"])
    names = [i["name"] for i in manifest["pieces"]["animate"]["inputs"]]

    def run_onnx():
        feeds = [[source[None], *params, frames[t : t + 1], relative] for t in range(args.frames)]
        feeds = [dict(zip(names, feed, strict=True)) for feed in feeds]
        return [session.run(None, feed)[0] for feed in feeds]

    def run_exported_jax():
        return [np.asarray(animate(source[None], *params, frames[t : t + 1], relative)) for t in range(args.frames)]

    methods = {
        "library": lambda: evaluation.animate(model, source, frames, "relative", chunk_size=1),
        "exported_jax": run_exported_jax,
        "onnxruntime": run_onnx,
    }
    results = {}
    for name, fn in methods.items():
        results[name] = _time(fn, args.repeats)
        results[name]["frames_per_s"] = round(args.frames / results[name]["median_s"], 3)
    difference = float(np.max(np.abs(np.concatenate(run_onnx()) - np.concatenate(run_exported_jax()))))
    report = {
        "config": args.config,
        "size": args.size,
        "frames": args.frames,
        "mode": "relative",
        "repeats": args.repeats,
        "statistic": "median over repeats, whole clip per repeat, one frame per call",
        "results": results,
        "onnx_export_s": round(export_s, 1),
        "onnx_opset": manifest["opset"],
        "max_abs_difference_onnx_vs_jax": difference,
        "onnxruntime": ort.__version__,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        **cpu_description(),
    }
    cpu = f"CPU: {report['cpu']}; {' '.join(report['vector_extensions'] or [])}\n"
    emit(report, cpu + table(results, ["first_call_s", "median_s", "frames_per_s"]), args.out)


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as animation_fps.py and the launch scripts do
    main()
