"""The work to be done, for the floor: FLOPs of a training step and of one animated frame, and
this machine's matrix-product rate (random weights).

    python benchmarks/flops.py --config configs/vox256.py --size 256 --batch 2

training_step_gflop: XLA's cost analysis of the compiled reconstruction step (equivariance + L1,
the `l1` variant of training_step.py), counted with XLA's own convolution gradients everywhere,
because the cost analysis counts a loop's body once and `conv2d`'s output-patch kernel gradients
are loops: the same sums, all counted. animation_frame_gflop: the compiled animation chunk of one
frame (region predictor on the driving frame, flow predictor, generator decoder; the source
encoded once, outside). matmul_gflop_per_s: a jitted 2048x2048 float32 matrix product, median of
20 calls. floor_s = GFLOP / that rate. Prints JSON.
"""

from __future__ import annotations

import argparse
import json

from _measure import median_seconds

from mraa_jax.process_tuning import tune_process


def matmul_rate() -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    return 2 * 2048**3 / median_seconds(jax.jit(lambda a: a @ a), (a,), 20) / 1e9


def _gflop(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["flops"] / 1e9


def training_step_gflop(config: str, size: int, batch: int) -> float:
    from training_step import build_step

    from mraa_jax.modules import conv

    conv.conv_method = lambda *args: "xla"  # count every gradient (see the docstring)
    step, step_args, _ = build_step(config, size, batch, "float32", "l1")
    return _gflop(step.lower(*step_args).compile())


def animation_frame_gflop(config_path: str, size: int) -> float:
    import numpy as np

    from mraa_jax import evaluation
    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA

    config = load_config(config_path)
    config.dataset_params.frame_shape = [size, size, 3]
    model = MRAA.random(config)
    chunk_program = model.jitted.animation_chunk
    counted = []

    def count_then_run(*args, **kwargs):
        counted.append(_gflop(chunk_program.lower(*args, **kwargs).compile()))
        return chunk_program(*args, **kwargs)

    model.jitted.animation_chunk = count_then_run
    rng = np.random.default_rng(0)
    evaluation.animate(
        model,
        rng.random((size, size, 3), np.float32),
        rng.random((1, size, size, 3), np.float32),
        "relative",
        chunk_size=1,
    )
    return counted[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    rate = matmul_rate()
    report = {"config": args.config, "size": args.size, "batch": args.batch, "matmul_gflop_per_s": round(rate, 1)}
    for name, gflop in (
        ("animation_frame", animation_frame_gflop(args.config, args.size)),
        ("training_step", training_step_gflop(args.config, args.size, args.batch)),
    ):
        report[f"{name}_gflop"] = round(gflop, 1)
        report[f"{name}_floor_s"] = round(gflop / rate, 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
