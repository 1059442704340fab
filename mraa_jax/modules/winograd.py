"""Winograd F(4x4, 3x3): a 3x3 convolution (NHWC, HWIO, stride 1) in 4x fewer multiplications.

Each 4x4 tile of the output is computed from the 6x6 input tile under it: the input tile is
transformed (B^T d B, additions and small integer multiples), multiplied position by position
with the transformed kernel (G g G^T), which for C channels and F features is 36 matrix products
(tiles, C) x (C, F), and transformed back (A^T m A): 36 multiplications per tile and channel pair
instead of 144 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016,
interpolation points 0, 1, -1, 2, -2). The transforms' coefficients (up to 8 and 1/24) round more
than the direct sum: on the bottleneck's layer, errors up to 5.2e-5 of the output's RMS (mean
1.6e-6) against the direct convolution's 2.4e-6 (`benchmarks/winograd_difference.py`). `conv2d`
uses it for inference only, on CPU, for wide layers on many pixels (modules/conv.py; timings:
docs/performance.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TILE = 4  # output pixels per tile side; input tiles are TILE + 2 wide
INPUT_TRANSFORM = np.array(  # B^T
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float32,
)
KERNEL_TRANSFORM = np.array(  # G
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float32,
)
OUTPUT_TRANSFORM = np.array(  # A^T
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float32
)


def _combine(matrix: np.ndarray, arrays: list) -> list:
    """matrix @ arrays, one weighted sum of the arrays per row, zero weights skipped: elementwise
    work that XLA fuses, where a product with a 6x6 matrix would be a matrix product."""
    sums = []
    for row in matrix:
        terms = [a if c == 1 else -a if c == -1 else float(c) * a for c, a in zip(row, arrays) if c != 0]
        sums.append(sum(terms[1:], terms[0]))
    return sums


def transformed_kernel(kernel: jax.Array) -> jax.Array:
    """G g G^T of a (3, 3, C, F) kernel: (6, 6, C, F), each position a contiguous (C, F) matrix.
    By weighted sums of the taps: as an einsum, XLA:CPU computed it with the 6 positions
    innermost and then sliced each (C, F) matrix out of that, which at one frame per call cost
    more than Winograd saved."""
    rows = _combine(KERNEL_TRANSFORM, [kernel[i] for i in range(3)])  # 6 x (3, C, F)
    return jnp.stack([jnp.stack(_combine(KERNEL_TRANSFORM, [row[j] for j in range(3)])) for row in rows])


def conv_by_winograd(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """`lax.conv_general_dilated(x, kernel, (1, 1), [(padding, padding)] * 2)` for a 3x3 kernel by
    Winograd F(4x4, 3x3), in float32. x (N, H, W, C), kernel (3, 3, C, F). The input is padded
    on the bottom and right to whole tiles and the extra outputs are cut off. The input tile's
    row transform is applied first; each of its 6 rows gives 6 column-transformed arrays, stacked
    for one batched matrix product (timed faster than one stack of all 36)."""
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"conv_by_winograd needs a 3x3 kernel, got {kernel.shape[:2]}")
    n, h, w, channels = x.shape
    features = kernel.shape[-1]
    h_out, w_out = h + 2 * padding - 2, w + 2 * padding - 2
    tiles_h, tiles_w = -(-h_out // TILE), -(-w_out // TILE)
    extra_h, extra_w = TILE * tiles_h - h_out, TILE * tiles_w - w_out
    padded = jnp.pad(x, ((0, 0), (padding, padding + extra_h), (padding, padding + extra_w), (0, 0)))
    size = TILE + 2
    kernel = transformed_kernel(kernel.astype(jnp.float32))
    rows = _combine(INPUT_TRANSFORM, [padded[:, i : i + TILE * tiles_h : TILE] for i in range(size)])
    products = []
    for a, row in enumerate(rows):
        tiles = _combine(INPUT_TRANSFORM, [row[:, :, j : j + TILE * tiles_w : TILE] for j in range(size)])
        tiles = jnp.stack(tiles).reshape(size, -1, channels)  # (6, N * tiles_h * tiles_w, C)
        products.append(jnp.einsum("bpc,bcf->bpf", tiles, kernel[a], preferred_element_type=jnp.float32))
    out = [_combine(OUTPUT_TRANSFORM, list(row)) for row in _combine(OUTPUT_TRANSFORM, products)]
    out = jnp.stack([jnp.stack(row, axis=1) for row in out])  # (4 rows, tiles, 4 columns, F)
    out = out.reshape(TILE, n, tiles_h, tiles_w, TILE, features).transpose(1, 2, 0, 3, 4, 5)
    out = out.reshape(n, TILE * tiles_h, TILE * tiles_w, features)[:, :h_out, :w_out]
    return out.astype(x.dtype)
