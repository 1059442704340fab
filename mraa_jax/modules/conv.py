"""Stride-1 2-D convolution (NHWC, HWIO) whose kernel gradient is fast on CPU.

XLA:CPU computes a convolution's kernel gradient as a convolution with the image as
the kernel, which on large layers runs at 15-45 GFLOP/s against 150-190 GFLOP/s for the
forward pass (2 cores; vox256's 256x256 and 128x128 layers at batch 2). For such layers
`conv2d` computes that gradient instead as one matrix product per kernel tap: the input
shifted by the tap, (N*H*W, C)^T, times the output gradient, (N*H*W, F). That is the same
sum in another order, 2-4x faster there (1.11 -> 0.27 s for the 256x256, 64 -> 128
channel layer: benchmarks/conv_gradient.py). The input gradient keeps XLA's rule, and on
other backends (cuDNN on GPU) so does the kernel gradient.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mraa_jax import geometry

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# Where the per-tap products won on CPU (benchmarked layer by layer): kernels up to 3x3,
# at least 8192 kernel columns (C*F, e.g. 64 -> 128 channels) and 32768 output rows
# (N*H*W, e.g. 2 images of 128x128). On smaller layers XLA's own gradient is as fast or
# up to 3x faster (2 images of 128x128, 32 -> 64 channels: 15 against 46 ms).
MAX_TAPS = 9
# 2x2 kernels (upsample_conv3x3's phase kernels): the per-tap products won on every such layer
# of vox256, rows x C x F from 1.4e8 (2 x 33 x 33 rows, 256 -> 256) up, by 1.1-4x; on
# configs/shapes.py's (at most 4.7e6) the loop made the whole step 30% slower.
MIN_PRODUCT_2X2 = 2**25
MIN_KERNEL_COLUMNS = 8192
MIN_OUTPUT_ROWS = 32768


def _xla_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=_DIMENSIONS)


def conv2d(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Convolution with stride 1 and `padding` zeros on each side; x (N, H, W, C), kernel (kh, kw, C, F)."""
    if uses_tap_gradient(x.shape, kernel.shape, padding):
        return _conv_tap_gradient(x, kernel, padding)
    return _xla_conv(x, kernel, padding)


def uses_tap_gradient(x_shape, kernel_shape, padding: int) -> bool:
    """Whether `conv2d` computes this layer's kernel gradient tap by tap (on CPU)."""
    kh, kw, channels, features = kernel_shape
    out_rows = x_shape[0] * (x_shape[1] + 2 * padding - kh + 1) * (x_shape[2] + 2 * padding - kw + 1)
    if kh * kw <= 4:
        return out_rows * channels * features >= MIN_PRODUCT_2X2
    return kh * kw <= MAX_TAPS and channels * features >= MIN_KERNEL_COLUMNS and out_rows >= MIN_OUTPUT_ROWS


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_tap_gradient(x, kernel, padding):
    return _xla_conv(x, kernel, padding)


def _forward(x, kernel, padding):
    return _xla_conv(x, kernel, padding), (x, kernel)


def _backward(padding, residuals, out_grad):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _xla_conv(x, kernel, padding), x)
    (x_grad,) = input_vjp(out_grad)

    def taps(x, g):
        grad = kernel_grad_by_taps(x, g, kernel.shape, padding)
        # Under shard_map, a kernel that is the same on every device (VGG-19's in the
        # perceptual loss) must get the sum of the devices' gradients, as XLA's rule gives
        # it: the transpose of "kernel used where x varies" does that sum (and is the
        # identity when the kernel varies like x, or outside shard_map).
        _, as_kernel_cotangent = jax.vjp(lambda k: k + 0 * jax.lax.stop_gradient(grad), kernel)
        return as_kernel_cotangent(grad)[0]

    kernel_grad = jax.lax.platform_dependent(
        x, out_grad, cpu=taps, default=lambda x, g: jax.vjp(lambda k: _xla_conv(x, k, padding), kernel)[1](g)[0]
    )
    return x_grad, kernel_grad


_conv_tap_gradient.defvjp(_forward, _backward)


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



def upsample_conv2d(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Nearest x2 upsampling of x, then `conv2d`.

    A 3x3 kernel with padding 1 on an input with at least as many pixels (N*H*W) as 4x the
    output channels goes through `upsample_conv3x3`. On smaller inputs with many channels (the
    hourglasses' deepest levels: 2x2 to 8x8 pixels, 512-2048 channels) its 2x2 phase kernels,
    16*C*F numbers, cost more than the multiply-adds they save: there, and for other kernels,
    the upsampled copy is convolved.
    """
    n, h, w, _ = x.shape
    if kernel.shape[:2] == (3, 3) and padding == 1 and n * h * w >= 4 * kernel.shape[-1]:
        return upsample_conv3x3(x, kernel)
    return conv2d(geometry.upsample_nearest_2x(x), kernel, padding)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nearest x2 upsampling then a 3x3 convolution with padding 1, without the upsampling.

    Each of the four output phases (even/odd row, even/odd column) is a 2x2 convolution of
    the low-resolution input, with the 3x3 kernel's taps summed where they read the same
    input pixel. All four are one 2x2 convolution with 4F outputs of the input padded by
    one; phase (a, b) is its output shifted by (a, b). The same sum up to float rounding in
    4/9 of the multiply-adds, with no upsampled copy of the input. On CPU, forward and
    gradient together, 2.2x faster on vox256's generator up blocks (2 x 64 x 64, 256 -> 128
    channels: 483 -> 218 ms; 2 x 128 x 128, 128 -> 64: 649 -> 269 ms).
    x (N, H, W, C), kernel (3, 3, C, F) -> (N, 2H, 2W, F).
    """
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"upsample_conv3x3 needs a 3x3 kernel, got {kernel.shape[:2]}")
    n, h, w, channels = x.shape
    features = kernel.shape[-1]
    phase_kernels = _phase_kernels(kernel).reshape(2, 2, channels, 4 * features)
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = conv2d(padded, phase_kernels, 0).reshape(n, h + 1, w + 1, 2, 2, features)
    rows = [jnp.stack([phases[:, a : a + h, b : b + w, a, b] for b in range(2)], axis=3) for a in range(2)]
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, features)


def _phase_kernels(kernel: jax.Array) -> jax.Array:
    """(3, 3, C, F) -> (2, 2, C, 2, 2, F): the 2x2 kernel of each output phase (last 2, 2).

    Output row 2i reads input rows i-1 (kernel row 0) and i (kernel rows 1 and 2); output
    row 2i+1 reads rows i (kernel rows 0 and 1) and i+1 (row 2). Likewise for columns.
    """

    def phases(k):  # kernel rows (axis 0) -> (phase, tap, ...)
        return jnp.stack([jnp.stack([k[0], k[1] + k[2]]), jnp.stack([k[0] + k[1], k[2]])])

    by_rows = phases(kernel)  # (a, p, 3, C, F)
    by_both = phases(jnp.moveaxis(by_rows, 2, 0))  # (b, q, a, p, C, F)
    return by_both.transpose(3, 1, 4, 2, 0, 5)
