"""Nearest x2 upsampling followed by a convolution (the UpBlocks' first layer), NHWC."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mraa_jax import geometry
from mraa_jax.modules.conv import conv2d


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
    4/9 of the multiply-adds, with no upsampled copy of the input (timings:
    docs/performance.md).
    x (N, H, W, C), kernel (3, 3, C, F) -> (N, 2H, 2W, F).
    """
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"upsample_conv3x3 needs a 3x3 kernel, got {kernel.shape[:2]}")
    n, h, w, channels = x.shape
    features = kernel.shape[-1]
    phase_kernels = _phase_kernels(kernel).reshape(2, 2, channels, 4 * features)
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = conv2d(padded, phase_kernels, 0).reshape(n, h + 1, w + 1, 2, 2, features)
    return _interleave_phases(phases)


@jax.custom_vjp
def _interleave_phases(phases: jax.Array) -> jax.Array:
    """(N, H+1, W+1, 2, 2, F) -> (N, 2H, 2W, F): output pixel (2i+a, 2j+b) is phases[:, i+a, j+b, a, b].

    Each phase is upsampled (a broadcast) and the output picks one per pixel by its row and
    column parity. Written as a stack, the interleave is a concatenation, which XLA:CPU runs
    element by element when it fuses it with the skip connection's warp (a gather) that is
    blended with it: 139 against 19 ms per 8 frames at 128x128x128 (benchmarks/fusion_forms.py).
    """
    n, h, w, _, _, features = phases.shape
    h, w = h - 1, w - 1

    def upsampled(a, b):
        phase = phases[:, a : a + h, b : b + w, a, b, None, :]
        return jnp.broadcast_to(phase[:, :, None], (n, h, 2, w, 2, features)).reshape(n, 2 * h, 2 * w, features)

    odd_row = (jnp.arange(2 * h) % 2 == 1)[None, :, None, None]
    odd_column = (jnp.arange(2 * w) % 2 == 1)[None, None, :, None]
    even_rows = jnp.where(odd_column, upsampled(0, 1), upsampled(0, 0))
    odd_rows = jnp.where(odd_column, upsampled(1, 1), upsampled(1, 0))
    return jnp.where(odd_row, odd_rows, even_rows)


def _interleave_forward(phases):
    return _interleave_phases(phases), None


def _interleave_backward(_, out_grad):
    # The four phases' cotangents, each padded to the phases' grid, stacked into ONE array.
    # (Autodiff's transpose gives four full-size pads added together, which XLA keeps as
    # four buffers when two ops read the sum: the phase conv's input and kernel gradients.)
    n, h2, w2, features = out_grad.shape
    grad = out_grad.reshape(n, h2 // 2, 2, w2 // 2, 2, features)
    pad = lambda a, b: jnp.pad(grad[:, :, a, :, b], ((0, 0), (a, 1 - a), (b, 1 - b), (0, 0)))  # noqa: E731
    return (jnp.stack([jnp.stack([pad(a, b) for b in range(2)], axis=3) for a in range(2)], axis=3),)


_interleave_phases.defvjp(_interleave_forward, _interleave_backward)


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
