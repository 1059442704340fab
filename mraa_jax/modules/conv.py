"""Stride-1 2-D convolution (NHWC, HWIO) with its own VJP, in forms that XLA:CPU runs fast.

XLA:CPU runs convolutions either through YNNPACK (its default) or through Eigen. YNNPACK's
kernel gradients are slow (it computes them as a convolution with the image as the kernel),
and its forward 3x3 convolutions are slower than Eigen's too (on AMD and Intel). Every program of the
library is therefore compiled with `process_tuning.CPU_COMPILER_OPTIONS` on CPU (YNNPACK keeps
matrix products and reductions, Eigen takes the convolutions). Eigen is slow on thin layers,
large kernels to few outputs (the generator's 7x7 layer to 3 channels); `conv2d` runs those
by kernel columns (`conv_by_kernel_columns`). In bfloat16 (the opt-in compute dtype), 3x3
layers on CPU run as one matrix product per kernel tap (`conv_by_taps`): XLA:CPU runs bfloat16
matrix products at AMX's rate but bfloat16 convolutions no faster than float32 ones. In float32,
wide 3x3 layers on enough pixels (the generator's bottleneck; the hourglasses' 16x16 layers in
chunks) run by Winograd F(4x4, 3x3) on CPU when not differentiated (modules/winograd.py): 4x
fewer multiplications, while training keeps the direct convolution. Within
`portable_convolutions()` (ONNX export) the CPU-only forms are left out. Timings: docs/performance.md.

`conv2d`'s VJP:
- the kernel gradient of thin layers by "output patches": per kernel row, one matrix product
  of the padded input, (rows, C)^T, with the kw shifted copies of the thin output gradient
  side by side, (rows, kw*F), faster than Eigen's; XLA's rule elsewhere, and on other
  backends (cuDNN on GPU);
- the input gradient made to depend on the kernel gradient (plus 0 times its sum), so that
  XLA runs each kernel gradient as soon as it can instead of at the end of the backward
  pass, where it kept each layer's output gradient and input alive until then.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp

from mraa_jax.modules.cotangents import cotangent_for
from mraa_jax.modules.winograd import conv_by_winograd

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# Thin kernels: larger than 3x3 with at most 16 output and at least 32 input channels. Kernel
# columns and output patches are faster than Eigen's forward and kernel gradient on every such
# layer of vox256 (docs/performance.md).
MAX_THIN_FEATURES = 16
MIN_THIN_CHANNELS = 32
# bfloat16 3x3 layers by taps from this many pixels (N*H*W) up (smaller products do not pay).
MIN_TAPS_PIXELS = 256
# Float32 3x3 layers by Winograd from this many input and output channels, and pixels (N*H*W:
# one frame of 64x64 is 4096, 8 frames of 16x16 are 2048): 128 channels at 4096 pixels and
# 256 -> 512 at 256 pixels were as fast or faster direct.
MIN_WINOGRAD_CHANNELS = 256
MIN_WINOGRAD_PIXELS = 2048
_PORTABLE = contextvars.ContextVar("portable_convolutions", default=False)


def _xla_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=_DIMENSIONS)


def conv2d(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Convolution with stride 1 and `padding` zeros on each side; x (N, H, W, C), kernel (kh, kw, C, F)."""
    return _conv(x, kernel, padding, conv_method(kernel.shape, x.shape, x.dtype))


@contextlib.contextmanager
def portable_convolutions():
    """Within it, `conv2d` traces no CPU-only forms ("taps", "winograd"): for programs that leave
    JAX, such as ONNX graphs, which cannot hold `lax.platform_dependent`."""
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)


def conv_method(kernel_shape, x_shape, dtype=jnp.float32) -> str:
    """How `conv2d` runs a layer of kernel (kh, kw, C, F) on x (N, H, W, C):
    - "thin" for kernels larger than 3x3 with few outputs from many inputs (the generator's 7x7
      layer to 3 channels): forward by kernel columns, kernel gradient by output patches on CPU;
    - "taps" for bfloat16 3x3 layers on at least MIN_TAPS_PIXELS pixels: forward on CPU by one
      matrix product per kernel tap (`conv_by_taps`), XLA's gradients;
    - "winograd" for float32 3x3 layers of at least MIN_WINOGRAD_CHANNELS inputs and outputs on at
      least MIN_WINOGRAD_PIXELS pixels: on CPU and not differentiated, by Winograd F(4x4, 3x3);
      differentiated (training) and elsewhere, XLA's convolution and gradients;
    - "xla" (XLA's convolution and its gradients) elsewhere."""
    kh, kw, channels, features = kernel_shape
    pixels = x_shape[0] * x_shape[1] * x_shape[2]
    if kh * kw > 9 and features <= MAX_THIN_FEATURES and channels >= MIN_THIN_CHANNELS:
        return "thin"
    if (kh, kw) != (3, 3) or _PORTABLE.get():
        return "xla"
    if jnp.dtype(dtype) == jnp.bfloat16 and pixels >= MIN_TAPS_PIXELS:
        return "taps"
    wide = min(channels, features) >= MIN_WINOGRAD_CHANNELS
    if jnp.dtype(dtype) == jnp.float32 and wide and pixels >= MIN_WINOGRAD_PIXELS:
        return "winograd"
    return "xla"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, padding, method):
    cpu_forms = {"taps": conv_by_taps, "winograd": conv_by_winograd}
    if method in cpu_forms:
        return jax.lax.platform_dependent(
            x,
            kernel,
            cpu=lambda x, k: cpu_forms[method](x, k, padding),
            default=lambda x, k: _xla_conv(x, k, padding),
        )
    return conv_by_kernel_columns(x, kernel, padding) if method == "thin" else _xla_conv(x, kernel, padding)


def _forward(x, kernel, padding, method):
    """The forward pass when differentiated: Winograd's rounding is for inference only."""
    return _conv(x, kernel, padding, "xla" if method == "winograd" else method), (x, kernel)


def conv_by_kernel_columns(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """`_xla_conv(x, kernel, padding)` as a (kh x 1) convolution to kw*F features (kernel column
    j's F outputs side by side), then column j's outputs shifted left by j and summed. For thin
    kernels this runs 2-3x faster under Eigen than the direct convolution, whose matrix products
    are F columns wide, and about as fast under YNNPACK (docs/performance.md)."""
    kh, kw, channels, features = kernel.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    columns = kernel.transpose(0, 2, 1, 3).reshape(kh, 1, channels, kw * features)
    by_column = jax.lax.conv_general_dilated(padded, columns, (1, 1), [(0, 0)] * 2, dimension_numbers=_DIMENSIONS)
    width = by_column.shape[2] - kw + 1
    by_column = by_column.reshape(by_column.shape[:3] + (kw, features))
    return sum(by_column[:, :, j : j + width, j] for j in range(kw))


def conv_by_taps(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """`_xla_conv(x, kernel, padding)` as kh*kw matrix products, one per kernel tap, accumulated
    in float32. Row-major, the padded image's pixels for tap (i, j) are one contiguous slice of
    its flattened rows, offset by i*width + j; the outputs computed past each row's end are cut at
    the end. In bfloat16 on CPUs with native bfloat16 products (AMX) this runs the bottleneck's
    layer 1.5-1.8x faster than XLA's convolution in float32 or bfloat16 (docs/performance.md)."""
    kh, kw, channels, features = kernel.shape
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding + 1), (padding, padding), (0, 0)))  # + 1 row: the last slice fits
    width = w + 2 * padding
    h_out, w_out = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    flat, length = padded.reshape(n, -1, channels), h_out * width
    out = sum(
        jnp.einsum(
            "nlc,cf->nlf",
            flat[:, i * width + j : i * width + j + length],
            kernel[i, j],
            preferred_element_type=jnp.float32,
        )
        for i in range(kh)
        for j in range(kw)
    )
    return out.reshape(n, h_out, width, features)[:, :, :w_out].astype(x.dtype)


def _backward(padding, method, residuals, out_grad):
    x, kernel = residuals
    _, xla_vjp = jax.vjp(lambda x, k: _xla_conv(x, k, padding), x, kernel)
    x_grad, kernel_grad = xla_vjp(out_grad)
    if method == "thin":
        kernel_grad = jax.lax.platform_dependent(
            x,
            out_grad,
            cpu=lambda x, g: cotangent_for(kernel, kernel_grad_by_output_patches(x, g, kernel.shape, padding)),
            default=lambda x, g: kernel_grad,
        )
    # x_grad made to depend on kernel_grad: see the module's docstring.
    return x_grad + 0 * jnp.sum(kernel_grad).astype(x_grad.dtype), kernel_grad


_conv.defvjp(_forward, _backward)


def kernel_grad_by_output_patches(x: jax.Array, out_grad: jax.Array, kernel_shape, padding: int) -> jax.Array:
    """d(loss)/d(kernel) of `_xla_conv(x, kernel, padding)` given d(loss)/d(output), one product
    per kernel row: kernel[i, j, c, f] sums padded-input pixel q's channel c times
    out_grad[q - (i, j), f] over all q; for row i, the kw shifts of the (thin) output gradient
    sit side by side as kw*F columns. The rows run one after another (a loop), so that one
    row's shifted copies are alive at a time, not all kh rows' at once."""
    kh, kw, channels, features = kernel_shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    height, width = padded.shape[1:3]
    pixels = padded.reshape(-1, channels).T
    grad = jnp.pad(out_grad, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))

    def kernel_row(i):
        # Shift (i, j) at pixel q reads out_grad[q - (i, j)], which is grad[q + (kh-1-i, kw-1-j)].
        rows = jax.lax.dynamic_slice_in_dim(grad, kh - 1 - i, height, axis=1)
        shifted = [rows[:, :, kw - 1 - j : kw - 1 - j + width] for j in range(kw)]
        columns = jnp.stack(shifted, axis=-2).reshape(-1, kw * features)
        return jnp.dot(pixels, columns, preferred_element_type=jnp.float32)

    product = jax.lax.map(kernel_row, jnp.arange(kh))  # (kh, C, kw * F)
    return product.reshape(kh, channels, kw, features).transpose(0, 2, 1, 3).astype(x.dtype)
