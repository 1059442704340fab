"""Two pieces of vox256's animation whose speed depends on how XLA:CPU fuses them, each in the
form the library uses and in the form it replaced.

    python benchmarks/fusion_forms.py [--batch 8 --repeats 9]

- blend: an up block's output (BatchNorm and ReLU of its interleaved phases) blended with the
  warped skip connection, `warped * occlusion + up * (1 - occlusion)`, as `Generator.decode`
  does, at 128x128x128 and 256x256x64. Forms: `stack` (the phases interleaved by stacking
  them, the previous form) and `library` (`upsample_conv._interleave_phases`: parity selects).
- down_block: a DownBlock (3x3 convolution, BatchNorm, ReLU, 2x2 average pool) of the flow
  predictor's hourglass, 8x8x1024 -> 4x4x1024. Forms: `reduction` (the pool as a mean over
  2x2 windows, the previous form: YNNPACK's reduce fusion takes the convolution in) and
  `library` (`geometry.avg_pool_2x`: four strided views summed, the convolution left to Eigen).

Each compiled with the library's options (`process_tuning.CPU_COMPILER_OPTIONS`), timed alone:
median of --repeats after a warm-up, milliseconds per call on --batch frames. Random inputs.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from _measure import cpu_description, median_seconds, table

from mraa_jax import geometry
from mraa_jax.modules.conv import conv2d
from mraa_jax.modules.upsample_conv import _interleave_phases
from mraa_jax.process_tuning import CPU_COMPILER_OPTIONS, tune_process


def interleave_by_stacking(phases):
    """The previous `_interleave_phases`: output pixel (2i+a, 2j+b) is phases[:, i+a, j+b, a, b]."""
    n, h, w, _, _, features = phases.shape
    h, w = h - 1, w - 1
    rows = [jnp.stack([phases[:, a : a + h, b : b + w, a, b] for b in range(2)], axis=3) for a in range(2)]
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, features)


def pool_by_reduction(x):
    """The previous `avg_pool_2x`: a mean over each 2x2 window."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def blend(interleave, size, features, batch, rng):
    """The function and its inputs: up block output blended with the warped skip connection."""
    phases = rng.random((batch, size // 2 + 1, size // 2 + 1, 2, 2, features), np.float32)
    level = rng.random((1, size, size, features), np.float32)
    flow = rng.uniform(-1.1, 1.1, (batch, 64, 64, 2)).astype(np.float32)
    occlusion = rng.random((batch, 64, 64, 1), np.float32)
    scale = rng.random((features,), np.float32)

    def apply(phases, level, flow, occlusion):
        up = jax.nn.relu(interleave(phases) * scale + 0.1)
        skip = jnp.broadcast_to(level, (batch,) + level.shape[1:])
        warped = geometry.grid_sample(skip, geometry.resize_bilinear(flow, size, size))
        occlusion = geometry.resize_bilinear(occlusion, size, size)
        return warped * occlusion + up * (1 - occlusion)

    return apply, tuple(map(jnp.asarray, (phases, level, flow, occlusion)))


def down_block(pool, batch, rng):
    """The function and its inputs: the flow predictor hourglass's deepest DownBlock."""
    x = rng.random((batch, 8, 8, 1024), np.float32)
    kernel = rng.standard_normal((3, 3, 1024, 1024)).astype(np.float32) * 0.01
    scale = rng.random((1024,), np.float32)
    return (lambda x, kernel: pool(jax.nn.relu(conv2d(x, kernel, 1) * scale + 0.1))), (
        jnp.asarray(x),
        jnp.asarray(kernel),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = {
        "blend 128x128x128": {
            "stack": blend(interleave_by_stacking, 128, 128, args.batch, rng),
            "library": blend(_interleave_phases, 128, 128, args.batch, rng),
        },
        "blend 256x256x64": {
            "stack": blend(interleave_by_stacking, 256, 64, args.batch, rng),
            "library": blend(_interleave_phases, 256, 64, args.batch, rng),
        },
        "down_block 8x8x1024": {
            "reduction": down_block(pool_by_reduction, args.batch, rng),
            "library": down_block(geometry.avg_pool_2x, args.batch, rng),
        },
    }
    rows = {}
    for case, forms in cases.items():
        rows[case] = {}
        for form, (fn, inputs) in forms.items():
            compiled = jax.jit(fn, compiler_options=CPU_COMPILER_OPTIONS)
            rows[case][f"{form} ms"] = round(median_seconds(compiled, inputs, args.repeats) * 1e3, 1)
    print(f"CPU: {cpu_description()['cpu']}; batch {args.batch}; ms per call")
    print(table(rows, ["stack ms", "reduction ms", "library ms"]))
    print(json.dumps({"batch": args.batch, "rows": rows, **cpu_description()}, indent=2))


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
