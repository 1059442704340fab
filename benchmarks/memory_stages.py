"""Where the host memory goes: resident set after each stage of a training step or an animation.

    python benchmarks/memory_stages.py --what training --config configs/vox256.py --size 256 --batch 2
    python benchmarks/memory_stages.py --what animation --config configs/vox256.py --size 256 --chunk 1 --trim

Stages. training: import jax; build (random init, Adam state, replication; as
benchmarks/training_step.py's L1 variant); compile the step; then --steps steps; then drop the
state and the compiled step and clear JAX's caches (what the executable held). animation:
import jax; MRAA.random; then --calls calls of mraa_jax.evaluation.animate on 8 random frames
in chunks of --chunk. After each stage: rss_mib (resident now) and peak_mib (the highest
resident set during the stage: Linux's VmHWM, reset after each stage through
/proc/self/clear_refs). With --trim, glibc's malloc_trim(0) runs before each reading, so that
memory freed but kept by glibc is not counted: what remains is what is in use.
Also XLA's own account of the compiled step (training). Linux only. Prints JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time

from mraa_jax.process_tuning import has_tunable, tune_process


class Stages:
    """Records the resident set after each stage."""

    def __init__(self, trim: bool):
        self.trim = ctypes.CDLL("libc.so.6").malloc_trim if trim else None
        self.rows = []
        self.start = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.trim:
            self.trim(0)
        with open("/proc/self/status") as f:
            kib = {
                key: int(value.split()[0])
                for key, value in (line.split(":", 1) for line in f)
                if key in ("VmRSS", "VmHWM")
            }
        now = time.perf_counter()
        self.rows.append(
            {
                "stage": name,
                "seconds": round(now - self.start, 2),
                "rss_mib": kib["VmRSS"] // 1024,
                "peak_mib": kib["VmHWM"] // 1024,
            }
        )
        self.start = now
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set


def training(args, stages: Stages) -> dict:
    import jax
    from training_step import build_step

    stages("import jax")
    step, (state, vgg, source, driving), _ = build_step(args.config, args.size, args.batch, "float32", "l1")
    jax.block_until_ready(state)
    stages("build")
    compiled = step.lower(state, vgg, source, driving).compile()
    stages("compile")
    for i in range(args.steps):
        state, metrics = compiled(state, vgg, source, driving)
        jax.block_until_ready((state, metrics))
        stages(f"step {i}")
    memory = compiled.memory_analysis()
    del compiled, state  # (metrics: a few scalars, and unbound with --steps 0)
    jax.clear_caches()  # JAX's in-memory caches keep the executable alive after our handle is gone
    stages("clear caches")
    return {
        "batch": args.batch,
        "xla_step_mib": {
            "arguments": memory.argument_size_in_bytes >> 20,
            "temporaries": memory.temp_size_in_bytes >> 20,
        },
    }


def animation(args, stages: Stages) -> dict:
    import jax
    import numpy as np

    from mraa_jax import evaluation
    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA

    stages("import jax")
    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    model = MRAA.random(config)
    jax.block_until_ready(model.variables)
    stages("MRAA.random")
    rng = np.random.default_rng(0)
    source = rng.random((args.size, args.size, 3), np.float32)
    frames = rng.random((8, args.size, args.size, 3), np.float32)
    for i in range(args.calls):
        evaluation.animate(model, source, frames, "relative", chunk_size=args.chunk)
        stages(f"call {i}")
    return {"chunk": args.chunk}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=("training", "animation"), default="training")
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2, help="training: global batch")
    parser.add_argument("--steps", type=int, default=3, help="training: steps after compilation")
    parser.add_argument("--chunk", type=int, default=1, help="animation: frames per jitted call")
    parser.add_argument("--calls", type=int, default=3, help="animation: calls of animate (8 frames each)")
    parser.add_argument(
        "--trim", action="store_true", help="malloc_trim(0) before each reading: count memory in use only"
    )
    args = parser.parse_args()
    stages = Stages(args.trim)
    specific = (training if args.what == "training" else animation)(args, stages)  # its own settings and figures
    report = {
        "what": args.what,
        "config": args.config,
        "size": args.size,
        "trim": args.trim,
        "glibc_hugetlb": has_tunable(),
        "stages": stages.rows,
        **specific,
    }
    for row in stages.rows:
        print(
            f"{row['stage']:<14} {row['seconds']:>7.2f} s  rss {row['rss_mib']:>6} MiB  peak {row['peak_mib']:>6} MiB"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
