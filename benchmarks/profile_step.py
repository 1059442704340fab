"""Where a training step's time goes: one step traced with jax.profiler, XLA's ops ranked.

    python benchmarks/profile_step.py --config configs/vox256.py --size 256 --batch 2 --top 25

Builds the reconstruction step with benchmarks/training_step.py's `build_step` (its `l1`
variant: equivariance + L1; random weights), runs --warmup untimed steps, then traces one step
(`jax.profiler.trace`, a Perfetto trace written under --trace_dir). Prints the traced step's
wall time, the op time summed by kind of XLA op (the fusion kind: matrix products and
YNNPACK's convolutions are `ynn_fusion` on CPU), and the --top ops with the model code each
comes from (XLA's op_name metadata). Tracing adds overhead: compare ops with each other,
not the traced time with training_step.py's. Eigen's convolutions, which the training steps
use on CPU (mraa_jax/modules/conv.py), are mostly missing from the trace: for vox256's step
(commit 0ada5e4) its ops add up to 2.8 s of a 4.2 s step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

from training_step import build_step

from mraa_jax.process_tuning import tune_process

# Trace events that wrap ops rather than being ops.
WRAPPERS = ("ThunkExecutor", "$", "SlinkyThreadPool", "PjitFunction")


def op_times(trace_dir: str) -> collections.Counter:
    """Microseconds per op name, summed over the trace's complete events (wrappers left out)."""
    path = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)[0]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    times = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith(WRAPPERS):
            times[event["name"]] += event.get("dur", 0)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--trace_dir", default=None, help="where the trace goes (default: a temporary folder)")
    args = parser.parse_args()

    import jax

    step, inputs, _ = build_step(args.config, args.size, args.batch, "float32", "l1")
    compiled = step.lower(*inputs).compile()
    state, rest = inputs[0], inputs[1:]
    for _ in range(args.warmup):
        state, metrics = compiled(state, *rest)
        jax.block_until_ready(metrics)
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="mraa-profile-")
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        state, metrics = compiled(state, *rest)
        jax.block_until_ready(metrics)
    traced_s = time.perf_counter() - start

    times = op_times(trace_dir)
    total = sum(times.values())
    kinds = collections.Counter()
    for name, us in times.items():
        kinds[re.sub(r"\.\d+$", "", name)] += us
    hlo = compiled.as_text()
    print(f"traced step {traced_s:.2f} s; ops {total / 1e6:.2f} s in all; trace in {trace_dir}")
    print("\nby kind of op:")
    for kind, us in kinds.most_common(12):
        print(f"  {us / 1e3:9.1f} ms  {100 * us / total:4.1f}%  {kind}")
    print(f"\ntop {args.top} ops:")
    for name, us in times.most_common(args.top):
        line = re.search(r"^\s*(?:ROOT )?%?" + re.escape(name) + r" = (\S+) (?:.*?op_name=\"([^\"]*)\")?", hlo, re.M)
        shape, source = (line.group(1), line.group(2) or "") if line else ("?", "")
        print(f"  {us / 1e3:9.1f} ms  {name:<32} {shape:<28} {source.removeprefix('jit(reconstruction_step)/')[:110]}")


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
