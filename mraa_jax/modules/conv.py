"""Stride-1 2-D convolution (NHWC, HWIO) with its own VJP, and how training compiles convolutions on CPU.

XLA:CPU runs convolutions either through YNNPACK (its default) or through Eigen. YNNPACK's
kernel gradients are slow: it computes them as a convolution with the image as the kernel.
The training steps are therefore compiled with `process_tuning.TRAINING_COMPILER_OPTIONS` on
CPU (YNNPACK keeps matrix products and reductions, Eigen takes the convolutions); the
forward-only programs (animation) keep YNNPACK, which runs the generator's thin 7x7 output
layer much faster than Eigen. Timings: docs/performance.md.

`conv2d`'s VJP:
- the kernel gradient of layers with large kernels and few outputs (the generator's 7x7
  layer to 3 channels) by "output_patches": per kernel row, one matrix product of the
  padded input, (rows, C)^T, with the kw shifted copies of the thin output gradient side by
  side, (rows, kw*F), faster than Eigen's; XLA's rule elsewhere, and on other backends
  (cuDNN on GPU);
- the input gradient made to depend on the kernel gradient (plus 0 times its sum), so that
  XLA runs each kernel gradient as soon as it can instead of at the end of the backward
  pass, where it kept each layer's output gradient and input alive until then.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mraa_jax.modules.cotangents import cotangent_for

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# Output patches, for kernels larger than 3x3 with at most 16 output and at least 32 input
# channels: faster than Eigen's on every such layer of vox256 (docs/performance.md).
MAX_PATCH_FEATURES = 16
MIN_PATCH_CHANNELS = 32


def _xla_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(padding, padding)] * 2, dimension_numbers=_DIMENSIONS)


def conv2d(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """Convolution with stride 1 and `padding` zeros on each side; x (N, H, W, C), kernel (kh, kw, C, F)."""
    return _conv(x, kernel, padding, kernel_gradient_method(kernel.shape))


def kernel_gradient_method(kernel_shape) -> str:
    """How `conv2d` computes this layer's kernel gradient on CPU: "output_patches" or "xla"."""
    kh, kw, channels, features = kernel_shape
    if kh * kw > 9 and features <= MAX_PATCH_FEATURES and channels >= MIN_PATCH_CHANNELS:
        return "output_patches"
    return "xla"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, padding, method):
    return _xla_conv(x, kernel, padding)


def _forward(x, kernel, padding, method):
    return _xla_conv(x, kernel, padding), (x, kernel)


def _backward(padding, method, residuals, out_grad):
    x, kernel = residuals
    _, xla_vjp = jax.vjp(lambda x, k: _xla_conv(x, k, padding), x, kernel)
    x_grad, kernel_grad = xla_vjp(out_grad)
    if method == "output_patches":
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
