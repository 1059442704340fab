"""One convolution in several algebraically equal forms, float32 and bfloat16, YNNPACK and Eigen.

    python benchmarks/conv_forms.py [--batch 8 --repeats 5 --layers bottleneck --dtypes float32]

Why `conv2d` runs thin 7x7 layers by kernel columns, bfloat16 3x3 layers on CPU by taps, and wide
float32 3x3 layers on many pixels by Winograd F(4x4, 3x3).
Layers of vox256's animation at 256x256 (`--batch` frames):
  bottleneck    64x64x256 * 3x3x256->256, padding 1 (12 of them per frame)
  output        256x256x64 * 7x7x64->3, padding 3 (the generator's last layer)
  flow_mask     64x64x108 * 7x7x108->11, padding 3
  narrow        64x64x128 * 3x3x128->128, padding 1 (not in vox256: where Winograd stops paying)
  deep          16x16x256 * 3x3x256->512, padding 1 (the region predictor's hourglass)
Forms: direct (XLA's convolution); kernel_columns (mraa_jax.modules.conv.conv_by_kernel_columns,
thin layers only); for the 3x3 layer also im2col (one matrix product with the 9 shifted copies
side by side), taps (`conv_by_taps`: 9 matrix products of the flattened padded image, one
per kernel tap), winograd_f4x4 (`mraa_jax.modules.winograd.conv_by_winograd`), winograd_f2x2
(F(2x2, 3x3), transforms by additions) and winograd_f2x2_products (its 16 matrix products alone,
on inputs of their shapes: what that form costs with free transforms).
Each compiled with XLA's default options (YNNPACK) and with the library's
(`process_tuning.CPU_COMPILER_OPTIONS`: Eigen), timed alone (median of --repeats after a
warm-up), inputs and kernels in the dtype, products accumulated in float32. Also the 2048x2048
matrix product's rate in both dtypes. Prints a table (milliseconds) and JSON.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from _measure import cpu_description, median_seconds, table

from mraa_jax.modules.conv import _xla_conv, conv_by_kernel_columns, conv_by_taps
from mraa_jax.modules.winograd import conv_by_winograd
from mraa_jax.process_tuning import CPU_COMPILER_OPTIONS, tune_process

LAYERS = {
    "bottleneck": ((64, 64, 256), (3, 3, 256, 256), 1),
    "output": ((256, 256, 64), (7, 7, 64, 3), 3),
    "flow_mask": ((64, 64, 108), (7, 7, 108, 11), 3),
    "narrow": ((64, 64, 128), (3, 3, 128, 128), 1),  # below Winograd's channel rule
    "deep": ((16, 16, 256), (3, 3, 256, 512), 1),  # an hourglass's: below its pixel rule
}


def im2col(x, kernel, padding):
    """The kh*kw shifted copies of x side by side, times the kernel as one (kh*kw*C, F) matrix."""
    kh, kw, channels, features = kernel.shape
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    h, w = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    columns = jnp.concatenate([padded[:, i : i + h, j : j + w] for i in range(kh) for j in range(kw)], axis=-1)
    out = jnp.dot(
        columns.reshape(-1, kh * kw * channels), kernel.reshape(-1, features), preferred_element_type=jnp.float32
    )
    return out.reshape(n, h, w, features).astype(x.dtype)


def _f23(a0, a1, a2, a3):
    """Winograd F(2, 3)'s input transform B^T along one axis, on the 4 strided views."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


def winograd_f2x2(x, kernel, padding):
    """Winograd F(2x2, 3x3) (3x3 kernels, padding 1, even H and W): per 2x2 output tile, the 4x4
    input tile transformed by additions (B^T d B, in the input's dtype), 16 matrix products
    (tiles, C) x (C, F), one per transformed position, with the transformed kernel G g G^T, and
    the output transform A^T m A by additions: 16 instead of 36 multiplications per tile."""
    n, h, w, channels = x.shape
    features = kernel.shape[-1]
    th, tw = h // 2, w // 2
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = _f23(*(padded[:, i : i + 2 * th : 2] for i in range(4)))
    tiles = [v for r in rows for v in _f23(*(r[:, :, j : j + 2 * tw : 2] for j in range(4)))]
    tiles = jnp.stack(tiles).reshape(16, n * th * tw, channels)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
    transformed = jnp.einsum("ai,ijcf,bj->abcf", g, kernel.astype(jnp.float32), g).reshape(16, channels, features)
    m = jnp.einsum("tpc,tcf->tpf", tiles, transformed.astype(x.dtype), preferred_element_type=jnp.float32)
    m = m.reshape(4, 4, n, th, tw, features)
    rows = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
    out = [[r[0] + r[1] + r[2], r[1] - r[2] - r[3]] for r in rows]  # out[a][b]: output pixel (2p + a, 2q + b)
    out = jnp.stack([jnp.stack(o, axis=3) for o in out], axis=2)  # (n, th, 2, tw, 2, F)
    return out.reshape(n, h, w, features).astype(x.dtype)


def winograd_f2x2_products(x, kernel, padding):
    """winograd_f2x2's 16 matrix products alone (inputs of the shapes they get): the form's bound."""
    n, h, w, channels = x.shape
    tiles = jnp.broadcast_to(x[:, ::2, ::2].reshape(1, -1, channels), (16, n * h * w // 4, channels))
    transformed = jnp.broadcast_to(kernel[:1, :1].reshape(1, channels, -1), (16, channels, kernel.shape[-1]))
    return jnp.einsum("tpc,tcf->tpf", tiles, transformed, preferred_element_type=jnp.float32)


FORMS = {
    "direct": _xla_conv,
    "kernel_columns": conv_by_kernel_columns,
    "im2col": im2col,
    "taps": conv_by_taps,
    "winograd_f4x4": conv_by_winograd,
    "winograd_f2x2": winograd_f2x2,
    "winograd_f2x2_products": winograd_f2x2_products,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", default=",".join(LAYERS), help=f"comma-separated, of {', '.join(LAYERS)}")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    layers = {name: LAYERS[name] for name in args.layers.split(",")}
    rng = np.random.default_rng(0)
    rows, rates = {}, {}
    for dtype in (jnp.dtype(name) for name in args.dtypes.split(",")):
        a = jnp.ones((2048, 2048), dtype)
        product = jax.jit(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32))
        rates[jnp.dtype(dtype).name] = round(2 * 2048**3 / median_seconds(product, (a,), 10) / 1e9, 1)
        for layer, (x_shape, kernel_shape, padding) in layers.items():
            x = jnp.asarray(rng.normal(size=(args.batch, *x_shape)), dtype)
            kernel = jnp.asarray(rng.normal(size=kernel_shape) * 0.05, dtype)
            thin = kernel_shape[-1] < 16
            for form, fn in FORMS.items():
                if (form == "kernel_columns") != thin and form != "direct":
                    continue
                row = {}
                for backend, options in (("ynnpack", None), ("eigen", CPU_COMPILER_OPTIONS)):
                    compiled = jax.jit(lambda x, k, fn=fn, p=padding: fn(x, k, p), compiler_options=options)
                    row[f"{backend}_ms"] = round(median_seconds(compiled, (x, kernel), args.repeats) * 1e3, 1)
                rows[f"{layer} {form} {jnp.dtype(dtype).name}"] = row
    report = {"batch": args.batch, "matmul_2048_gflop_per_s": rates, "layers": rows, **cpu_description()}
    report["jax"] = jax.__version__
    print(f"CPU: {report['cpu']}; 2048x2048 products (GFLOP/s): {rates}; ms per call of {args.batch} frames")
    print(table(rows, ["ynnpack_ms", "eigen_ms"]))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
