"""Stride-1 2-D convolution (NHWC, HWIO) whose kernel gradient is fast on CPU.

XLA:CPU computes a convolution's kernel gradient as a convolution with the image as
the kernel, which on large layers runs at 15-45 GFLOP/s against 150-190 GFLOP/s for the
forward pass (2 cores; vox256's 256x256 and 128x128 layers at batch 2). For such layers
`conv2d` computes the same sums in another order (benchmarks/conv_gradient.py):
- "taps": one matrix product per kernel tap, the input shifted by the tap, (N*H*W, C)^T,
  times the output gradient, (N*H*W, F). 1.11 -> 0.27 s for the 256x256, 64 -> 128
  channel layer.
- "output_patches", for layers with few output channels (the generator's 7x7 layer to
  3 channels): per kernel row, one matrix product of the padded input, (rows, C)^T, with
  the kw shifted copies of the thin output gradient side by side, (rows, kw*F).
The input gradient keeps XLA's rule, and on other backends (cuDNN on GPU) so does the
kernel gradient.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mraa_jax.modules.cotangents import cotangent_for

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# Where the per-tap products won on CPU (benchmarked layer by layer): kernels up to 3x3,
# at least 8192 kernel columns (C*F, e.g. 64 -> 128 channels) and 8192 output rows (N*H*W,
# e.g. 2 images of 64x64). vox256's twelve 64x64, 256-channel bottleneck layers at batch 2:
# 227 -> 60 ms each, and its training step 6.3 -> 4.5 s (against a limit of 32768 rows
# before). Some smaller layers win too in isolation (2 x 128 x 128, 32 -> 64: 46 -> 15 ms),
# but the taps on every layer up to 3x3 with rows x C x F >= 2^25 left vox256's step as
# fast, with 0.2 GB more memory.
MAX_TAPS = 9
MIN_KERNEL_COLUMNS = 8192
MIN_OUTPUT_ROWS = 8192
# 2x2 kernels (upsample_conv3x3's phase kernels): the per-tap products won on every such layer
# of vox256, rows x C x F from 1.4e8 (2 x 33 x 33 rows, 256 -> 256) up, by 1.1-4x; on
# configs/shapes.py's (at most 4.7e6) the loop made the whole step 30% slower.
MIN_PRODUCT_2X2 = 2**25
# Output patches, for kernels larger than 3x3 with at most 16 output and at least 32 input
# channels: 2-30x faster on every such layer of vox256 (2 x 256 x 256, 64 -> 3: 1.31 -> 0.39 s;
# 2 x 64 x 64, 108 -> 1: 296 -> 9 ms; 35 -> 10: 91 -> 45 ms), as fast on configs/shapes.py's
# 16 x 16, 52 -> 9; with fewer input channels (shapes' 8 -> 3, 19 -> 8) XLA's is 3-5x faster.
# (Timed as one product for all kernel rows; now one per row, for memory, timed in the step.)
MAX_PATCH_FEATURES = 16
MIN_PATCH_CHANNELS = 32


def _xla_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=_DIMENSIONS)


def conv2d(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Convolution with stride 1 and `padding` zeros on each side; x (N, H, W, C), kernel (kh, kw, C, F)."""
    method = kernel_gradient_method(x.shape, kernel.shape, padding)
    if method == "xla":
        return _xla_conv(x, kernel, padding)
    return _conv_own_kernel_gradient(x, kernel, padding, method)


def kernel_gradient_method(x_shape, kernel_shape, padding: int) -> str:
    """How `conv2d` computes this layer's kernel gradient on CPU: "taps", "output_patches" or "xla"."""
    kh, kw, channels, features = kernel_shape
    out_rows = x_shape[0] * (x_shape[1] + 2 * padding - kh + 1) * (x_shape[2] + 2 * padding - kw + 1)
    if kh * kw <= 4:
        return "taps" if out_rows * channels * features >= MIN_PRODUCT_2X2 else "xla"
    if kh * kw <= MAX_TAPS and channels * features >= MIN_KERNEL_COLUMNS and out_rows >= MIN_OUTPUT_ROWS:
        return "taps"
    if kh * kw > MAX_TAPS and features <= MAX_PATCH_FEATURES and channels >= MIN_PATCH_CHANNELS:
        return "output_patches"
    return "xla"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_own_kernel_gradient(x, kernel, padding, method):
    return _xla_conv(x, kernel, padding)


def _forward(x, kernel, padding, method):
    return _xla_conv(x, kernel, padding), (x, kernel)


def _backward(padding, method, residuals, out_grad):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _xla_conv(x, kernel, padding), x)
    (x_grad,) = input_vjp(out_grad)
    kernel_grad_by = {"taps": kernel_grad_by_taps, "output_patches": kernel_grad_by_output_patches}[method]

    def on_cpu(x, g):
        return cotangent_for(kernel, kernel_grad_by(x, g, kernel.shape, padding))

    kernel_grad = jax.lax.platform_dependent(
        x, out_grad, cpu=on_cpu, default=lambda x, g: jax.vjp(lambda k: _xla_conv(x, k, padding), kernel)[1](g)[0]
    )
    # x_grad made to depend on kernel_grad (plus 0 times its sum): XLA then runs the kernel
    # gradient's loop as soon as it can, not at the end of the backward pass, where it kept
    # each layer's output gradient and input alive until then.
    return x_grad + 0 * jnp.sum(kernel_grad).astype(x_grad.dtype), kernel_grad


_conv_own_kernel_gradient.defvjp(_forward, _backward)


def kernel_grad_by_taps(x: jax.Array, out_grad: jax.Array, kernel_shape, padding: int) -> jax.Array:
    """d(loss)/d(kernel) of `_xla_conv(x, kernel, padding)` given d(loss)/d(output): for each tap
    (i, j), the input shifted by (i, j) times the output gradient, summed over batch and pixels.
    The taps run one after another (a loop, not nine independent products), so that only one
    shifted copy of the input is alive at a time."""
    kh, kw, channels, features = kernel_shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    window_shape = (x.shape[0], *out_grad.shape[1:3], channels)
    grad_rows = out_grad.reshape(-1, features)
    offsets = jnp.array([(i, j) for i in range(kh) for j in range(kw)])

    def tap(offset):
        window = jax.lax.dynamic_slice(padded, (0, offset[0], offset[1], 0), window_shape)
        return jnp.dot(window.reshape(-1, channels).T, grad_rows, preferred_element_type=jnp.float32)

    return jax.lax.map(tap, offsets).reshape(kernel_shape).astype(x.dtype)


def kernel_grad_by_output_patches(x: jax.Array, out_grad: jax.Array, kernel_shape, padding: int) -> jax.Array:
    """Like `kernel_grad_by_taps`, one product per kernel row: kernel[i, j, c, f] sums
    padded-input pixel q's channel c times out_grad[q - (i, j), f] over all q; for row i, the
    kw shifts of the (thin) output gradient sit side by side as kw*F columns. (One product
    for all rows would hold kh*kw shifted copies at once: 77 MB for vox256's last layer.)"""
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
