"""Coordinate grids, sampling, resizing and region Gaussians with the original's semantics.

Everything here is pure `jax.numpy`: NHWC images, (x, y) coordinates in [-1, 1]
with x along the width. Sampling and resizing follow PyTorch's `grid_sample` and
`interpolate` (align_corners=False) because converted weights were trained on
exactly those, including their border behaviour.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def make_coordinate_grid(height: int, width: int, dtype=jnp.float32) -> jax.Array:
    """(height, width, 2) grid of (x, y) with -1 and 1 at the outer pixel centres."""
    x = 2.0 * (jnp.arange(width, dtype=dtype) / (width - 1)) - 1.0
    y = 2.0 * (jnp.arange(height, dtype=dtype) / (height - 1)) - 1.0
    xx = jnp.broadcast_to(x[None, :], (height, width))
    yy = jnp.broadcast_to(y[:, None], (height, width))
    return jnp.stack([xx, yy], axis=-1)


def inverse_2x2(m: jax.Array) -> jax.Array:
    """Closed-form inverse of (..., 2, 2) matrices."""
    a, b = m[..., 0, 0], m[..., 0, 1]
    c, d = m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2)
    return inv / det[..., None, None]


def region_gaussians(shift: jax.Array, covar, height: int, width: int) -> jax.Array:
    """Gaussian of each region on the (height, width) grid, channels last.

    shift: (B, K, 2). covar: (B, K, 2, 2), or a Python float variance shared by all
    regions. Returns (B, height, width, K) with exp(-1/2 d^T covar^-1 d).
    """
    grid = make_coordinate_grid(height, width, shift.dtype)
    diff = grid[None, :, :, None, :] - shift[:, None, None, :, :]  # (B, h, w, K, 2)
    if isinstance(covar, (int, float)):
        under_exp = jnp.sum(diff**2, axis=-1) / covar
    else:
        precision = inverse_2x2(covar)[:, None, None]  # (B, 1, 1, K, 2, 2)
        under_exp = jnp.einsum("...i,...ij,...j->...", diff, precision, diff)
    return jnp.exp(-0.5 * under_exp)


def _reflect(coord: jax.Array, size: int) -> jax.Array:
    """PyTorch's reflection of unnormalised coordinates for align_corners=False.

    Reflects about the borders at -0.5 and size - 0.5, then clips into [0, size - 1].
    """
    low, span = -0.5, float(size)
    coord = jnp.abs(coord - low)
    flips = jnp.floor(coord / span)
    extra = coord - flips * span
    even = jnp.mod(flips, 2) == 0
    coord = jnp.where(even, extra + low, span - extra + low)
    return jnp.clip(coord, 0, size - 1)


def grid_sample(image: jax.Array, grid: jax.Array, padding_mode: str = "zeros") -> jax.Array:
    """Bilinear sampling of `image` (B, H, W, C) at `grid` (B, h, w, 2) of (x, y).

    Matches `torch.nn.functional.grid_sample(..., align_corners=False)` with
    'zeros' or 'reflection' padding. Returns (B, h, w, C).

    The gradient gathers the four corners again, one at a time, instead of keeping them
    from the forward pass: 4x the output's memory that training would otherwise hold
    from the generator's warps until their backward pass.
    """
    if padding_mode not in ("zeros", "reflection"):
        raise ValueError(f"padding_mode must be 'zeros' or 'reflection', got {padding_mode!r}")
    return _grid_sample(image, grid, padding_mode)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _grid_sample(image: jax.Array, grid: jax.Array, padding_mode: str) -> jax.Array:
    return (
        _corner_term(image, grid, padding_mode, 0, 0)
        + _corner_term(image, grid, padding_mode, 1, 0)
        + _corner_term(image, grid, padding_mode, 0, 1)
        + _corner_term(image, grid, padding_mode, 1, 1)
    )


def _corner_term(image, grid, padding_mode: str, dx, dy) -> jax.Array:
    """The image at corner (x0 + dx, y0 + dy) of each sampling point, times its bilinear
    weight (0 outside the image). dx, dy: 0 or 1, Python ints or traced."""
    batch, in_h, in_w, channels = image.shape
    out_h, out_w = grid.shape[1:3]
    ix = ((grid[..., 0] + 1.0) * in_w - 1.0) / 2.0
    iy = ((grid[..., 1] + 1.0) * in_h - 1.0) / 2.0
    if padding_mode == "reflection":
        ix, iy = _reflect(ix, in_w), _reflect(iy, in_h)
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    wx1, wy1 = ix - x0, iy - y0
    weight = jnp.where(dx == 1, wx1, 1.0 - wx1) * jnp.where(dy == 1, wy1, 1.0 - wy1)
    xc, yc = x0 + dx, y0 + dy
    inside = (xc >= 0) & (xc <= in_w - 1) & (yc >= 0) & (yc <= in_h - 1)
    xi = jnp.clip(xc, 0, in_w - 1).astype(jnp.int32)
    yi = jnp.clip(yc, 0, in_h - 1).astype(jnp.int32)
    index = (yi * in_w + xi).reshape(batch, out_h * out_w, 1)
    values = jnp.take_along_axis(image.reshape(batch, in_h * in_w, channels), index, axis=1)
    return values.reshape(batch, out_h, out_w, channels) * jnp.where(inside, weight, 0.0)[..., None]


def _grid_sample_forward(image, grid, padding_mode):
    return _grid_sample(image, grid, padding_mode), (image, grid)


def _grid_sample_backward(padding_mode, residuals, out_grad):
    image, grid = residuals
    batch, height, width, channels = image.shape

    def add_corner(corner, grads):
        # Inside a loop XLA cannot merge this gather with the forward's (and so keep that).
        _, corner_vjp = jax.vjp(lambda im, gr: _corner_term(im, gr, padding_mode, corner % 2, corner // 2), image, grid)
        image_grad, grid_grad = corner_vjp(out_grad)
        return grads[0] + image_grad.reshape(grads[0].shape), grads[1] + grid_grad

    # The image's gradient accumulates as (B, H*W, C): zeros of the image's own shape could be
    # merged with other zeros of that shape (a ReLU's) and held from the forward pass.
    zeros = (jnp.zeros_like(image).reshape(batch, height * width, channels), jnp.zeros_like(grid))
    image_grad, grid_grad = jax.lax.fori_loop(0, 4, add_corner, zeros)
    return image_grad.reshape(image.shape), grid_grad


_grid_sample.defvjp(_grid_sample_forward, _grid_sample_backward)


def _linear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) matrix of PyTorch's 1-D linear interpolation, align_corners=False."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    m = np.zeros((out_size, in_size), np.float64)
    np.add.at(m, (np.arange(out_size), i0), 1.0 - lam)
    np.add.at(m, (np.arange(out_size), i1), lam)
    return m


def resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
    """Bilinear resize of (B, H, W, C) like `F.interpolate(mode='bilinear')`: no antialiasing."""
    in_h, in_w = x.shape[1:3]
    if (in_h, in_w) == (height, width):
        return x
    rows = jnp.asarray(_linear_resize_matrix(in_h, height), x.dtype)
    cols = jnp.asarray(_linear_resize_matrix(in_w, width), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of (B, H, W, C)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool_2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling with stride 2 (odd trailing rows/columns dropped, like PyTorch).

    In float32, the four strided views summed rather than a reduction: XLA:CPU's YNNPACK fuses
    a reduction with the convolution before it (the DownBlocks') and runs that convolution
    itself, slower than Eigen for the hourglasses' layers (the deepest DownBlock: 63 against 38
    ms per 8 frames, benchmarks/fusion_forms.py). In bfloat16 that fusion keeps the convolution's output in float32
    until the pool, which bfloat16's difference from float32 (tests/test_bf16.py) needs.
    """
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    if x.dtype != jnp.float32:
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return (x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]) * 0.25


def _antialias_1d(scale: float) -> np.ndarray:
    """The normalised 1-D Gaussian whose outer product with itself is `antialias_kernel(scale)`."""
    sigma = (1.0 / scale - 1.0) / 2.0
    size = 2 * round(sigma * 4) + 1
    coords = np.arange(size, dtype=np.float32)
    mean = (size - 1) / 2
    one_d = np.exp(-((coords - mean) ** 2) / (2 * sigma**2)).astype(np.float32)
    return one_d / one_d.sum()


def antialias_kernel(scale: float) -> np.ndarray:
    """The (k, k) Gaussian used before downsampling by `scale`; sums to 1.

    sigma = (1/scale - 1)/2, k = 2*round(4 sigma) + 1 (Python's round), centred at (k-1)/2.
    """
    one_d = _antialias_1d(scale)
    kernel = one_d[:, None] * one_d[None, :]
    return (kernel / kernel.sum()).astype(np.float32)


@functools.cache
def _antialias_matrix(size: int, scale: float) -> np.ndarray:
    """(floor(size * scale), size): blur with zero padding k//2, then keep every (1/scale)-th sample."""
    one_d = _antialias_1d(scale)
    pad = one_d.size // 2
    step = _inverse_scale(scale)
    matrix = np.zeros((int(size * scale), size), np.float32)
    for row in range(matrix.shape[0]):
        for tap, weight in enumerate(one_d):
            column = row * step + tap - pad
            if 0 <= column < size:
                matrix[row, column] = weight
    return matrix


def _inverse_scale(scale: float) -> int:
    """n for a scale of 1/n (the downsampling stride); anything else is an error."""
    inv_scale = int(round(1.0 / scale))
    if not math.isclose(inv_scale * scale, 1.0, rel_tol=1e-6):
        raise ValueError(f"scale_factor must be 1/n for an integer n, got {scale}")
    return inv_scale


def antialias_downsample(x: jax.Array, scale: float) -> jax.Array:
    """Blur (B, H, W, C) with `antialias_kernel(scale)` and keep every (1/scale)-th pixel.

    Zero padding of k//2 on each side; scale == 1 is the identity. Computed as one
    strided depthwise convolution, as the original does, so only the kept pixels are
    evaluated. The networks use it on their inputs; the loss pyramids use
    `antialias_downsample_separable`, whose gradient is much faster on CPU.
    """
    if scale == 1:
        return x
    stride = _inverse_scale(scale)
    kernel = antialias_kernel(scale)
    size = kernel.shape[0]
    channels = x.shape[-1]
    weights = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), x.dtype)
    pad = size // 2
    out = jax.lax.conv_general_dilated(
        x,
        weights,
        window_strides=(stride, stride),
        padding=[(pad, pad), (pad, pad)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
        precision=jax.lax.Precision.HIGHEST,
    )
    # PyTorch's nearest interpolation keeps floor(H * scale) rows.
    return out[:, : int(x.shape[1] * scale), : int(x.shape[2] * scale)]


def antialias_downsample_separable(x: jax.Array, scale: float) -> jax.Array:
    """`antialias_downsample` as two small matrix products, one per axis (the Gaussian is
    separable): equal up to float rounding, and its gradient is far faster on CPU than a
    depthwise convolution's (it was half of a small model's training step)."""
    if scale == 1:
        return x
    rows = jnp.asarray(_antialias_matrix(x.shape[1], scale), x.dtype)
    columns = jnp.asarray(_antialias_matrix(x.shape[2], scale), x.dtype)
    highest = jax.lax.Precision.HIGHEST
    out = jnp.einsum("oh,bhwc->bowc", rows, x, precision=highest)
    return jnp.einsum("pw,bowc->bopc", columns, out, precision=highest)


def apply_homogeneous(matrix: jax.Array, points: jax.Array) -> jax.Array:
    """Apply (B, 3, 3) projective matrices to points (B, ..., 2), dividing by the third coordinate."""
    ones = jnp.ones(points.shape[:-1] + (1,), points.dtype)
    homogeneous = jnp.concatenate([points, ones], axis=-1)
    batch_dims = points.ndim - 2
    m = matrix.reshape(matrix.shape[:1] + (1,) * batch_dims + (3, 3))
    out = jnp.einsum("...ij,...j->...i", m, homogeneous)
    return out[..., :2] / out[..., 2:3]
