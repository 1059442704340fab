"""Tests of mraa_jax.geometry against independent NumPy/SciPy references.

Every reference below is written from PyTorch's documented semantics (align_corners=False)
in plain float64 NumPy, without calling any mraa_jax helper, so that a shared mistake
cannot make both sides agree. The implementation runs in float32; each tolerance says
why it is what it is.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURE
from scipy import ndimage

from mraa_jax.geometry import (
    antialias_downsample,
    antialias_kernel,
    apply_homogeneous,
    avg_pool_2x,
    grid_sample,
    inverse_2x2,
    make_coordinate_grid,
    region_gaussians,
    resize_bilinear,
    upsample_nearest_2x,
)

# ------------------------------------------------------------------ NumPy references


def ref_coordinate_grid(h, w):
    """(h, w, 2) float64 grid with x = 2 j/(w-1) - 1, y = 2 i/(h-1) - 1, last axis (x, y)."""
    out = np.zeros((h, w, 2))
    for i in range(h):
        for j in range(w):
            out[i, j] = (2.0 * j / (w - 1) - 1.0, 2.0 * i / (h - 1) - 1.0)
    return out


def ref_reflect(coord, size):
    """PyTorch's reflect_coordinates for align_corners=False (twice_low=-1, twice_high=2*size-1)
    followed by clip_coordinates into [0, size-1]; scalar float64."""
    low, span = -0.5, float(size)
    c = abs(coord - low)
    extra = math.fmod(c, span)
    flips = math.floor(c / span)
    c = extra + low if flips % 2 == 0 else span - extra + low
    return min(max(c, 0.0), size - 1.0)


def ref_grid_sample(image, grid, padding_mode="zeros"):
    """Per-point bilinear sampling of NHWC `image` at `grid` (B, h, w, 2) of (x, y).

    Unnormalise with ((x+1)*W - 1)/2; 4 corners; a corner outside the image adds zero.
    """
    image = np.asarray(image, np.float64)
    grid = np.asarray(grid, np.float64)
    b_, in_h, in_w, c_ = image.shape
    out = np.zeros(grid.shape[:3] + (c_,))
    for b in range(b_):
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                ix = ((grid[b, i, j, 0] + 1.0) * in_w - 1.0) / 2.0
                iy = ((grid[b, i, j, 1] + 1.0) * in_h - 1.0) / 2.0
                if padding_mode == "reflection":
                    ix, iy = ref_reflect(ix, in_w), ref_reflect(iy, in_h)
                x0, y0 = math.floor(ix), math.floor(iy)
                fx, fy = ix - x0, iy - y0
                for xc, yc, wgt in (
                    (x0, y0, (1 - fx) * (1 - fy)),
                    (x0 + 1, y0, fx * (1 - fy)),
                    (x0, y0 + 1, (1 - fx) * fy),
                    (x0 + 1, y0 + 1, fx * fy),
                ):
                    if 0 <= xc < in_w and 0 <= yc < in_h:
                        out[b, i, j] += wgt * image[b, yc, xc]
    return out


def ref_resize_bilinear(x, out_h, out_w):
    """PyTorch interpolate(mode='bilinear', align_corners=False) on NHWC, per output pixel."""
    x = np.asarray(x, np.float64)
    in_h, in_w = x.shape[1:3]

    def src(d, n_in, n_out):
        s = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(s)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, s - i0

    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        y0, y1, ly = src(i, in_h, out_h)
        for j in range(out_w):
            x0, x1, lx = src(j, in_w, out_w)
            out[:, i, j] = (1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1]) + ly * (
                (1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]
            )
    return out


def ref_gaussian_kernel(scale):
    """float64 normalised outer product of 1-D Gaussians (sigma=(1/scale-1)/2, k=2 round(4 sigma)+1)."""
    sigma = (1.0 / scale - 1.0) / 2.0
    k = 2 * round(4 * sigma) + 1
    t = np.arange(k) - (k - 1) / 2.0
    g = np.exp(-(t**2) / (2 * sigma**2))
    kern = np.outer(g, g)
    return kern / kern.sum()


def ref_antialias_downsample(x, scale):
    """scipy.ndimage.correlate per (batch, channel) with zero padding, then every s-th pixel
    from index 0, keeping floor(size*scale) rows/columns (PyTorch nearest interpolate)."""
    x = np.asarray(x, np.float64)
    if scale == 1:
        return x
    s = int(round(1 / scale))
    kern = ref_gaussian_kernel(scale)
    out_h, out_w = int(math.floor(x.shape[1] * scale)), int(math.floor(x.shape[2] * scale))
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for b in range(x.shape[0]):
        for c in range(x.shape[3]):
            blurred = ndimage.correlate(x[b, :, :, c], kern, mode="constant", cval=0.0)
            out[b, :, :, c] = blurred[::s, ::s][:out_h, :out_w]
    return out


# ------------------------------------------------------------------ make_coordinate_grid


def test_make_coordinate_grid_non_square():
    g = np.asarray(make_coordinate_grid(5, 7))
    assert g.shape == (5, 7, 2)
    assert g.dtype == np.float32
    # Corners: last axis is (x, y) with x along the width.
    np.testing.assert_allclose(g[0, 0], [-1, -1], atol=1e-7)
    np.testing.assert_allclose(g[0, -1], [1, -1], atol=1e-7)
    np.testing.assert_allclose(g[-1, 0], [-1, 1], atol=1e-7)
    np.testing.assert_allclose(g[-1, -1], [1, 1], atol=1e-7)
    # x constant down columns, y constant along rows; spacing 2/(w-1) and 2/(h-1).
    np.testing.assert_allclose(np.diff(g[..., 0], axis=1), 2 / 6, atol=1e-6)
    np.testing.assert_allclose(np.diff(g[..., 1], axis=0), 2 / 4, atol=1e-6)
    assert np.all(np.diff(g[..., 0], axis=0) == 0)
    assert np.all(np.diff(g[..., 1], axis=1) == 0)
    # float32 arithmetic on values in [-1, 1]: a few ulp (1.2e-7 each).
    np.testing.assert_allclose(g, ref_coordinate_grid(5, 7), atol=1e-6)


# ------------------------------------------------------------------ grid_sample


def test_grid_sample_zeros_matches_reference():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, (2, 6, 4, 2)).astype(np.float32)
    # Make sure the test exercises points whose corners are partly/fully outside.
    assert np.any(np.abs(grid) > 1.0)
    got = np.asarray(grid_sample(jnp.asarray(image), jnp.asarray(grid)))
    want = ref_grid_sample(image, grid)
    assert got.shape == (2, 6, 4, 3)
    # A convex (<= 1 total weight) combination of 4 N(0,1) float32 values: rounding of the
    # weights and of the sum is ~1e-7 relative; 1e-5 absolute leaves plenty of margin.
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_grid_sample_fully_outside_is_zero():
    image = jnp.ones((1, 4, 4, 2))
    # ix = ((x+1)*4-1)/2 <= -1 for x <= -1.5 -> both x-corners are outside.
    grid = jnp.asarray([[[[-1.6, 0.0], [0.0, 1.6], [2.5, -2.5]]]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(grid_sample(image, grid)), 0.0)


def test_grid_sample_identity_grid_border_effect():
    h, w = 5, 7
    ones = np.ones((1, h, w, 1), np.float32)
    grid = np.asarray(make_coordinate_grid(h, w))[None]
    want = ref_grid_sample(ones, grid)[0, ..., 0]
    # What the reference says for align_corners=False: the outer pixel centres at +-1 land
    # half a pixel outside the image (ix = -0.5 or W - 0.5), so half of the bilinear weight
    # falls on a zero-padded pixel: 1 inside, 0.5 on edges, 0.25 at corners.
    expected = np.ones((h, w))
    expected[0, :] *= 0.5
    expected[-1, :] *= 0.5
    expected[:, 0] *= 0.5
    expected[:, -1] *= 0.5
    np.testing.assert_allclose(want, expected, atol=1e-12)
    got = np.asarray(grid_sample(jnp.asarray(ones), jnp.asarray(grid)))[0, ..., 0]
    # float32 weights that should sum to exactly 1 / 0.5 / 0.25: a few ulp.
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # And on a random image the identity grid is NOT the identity (it resamples).
    rng = np.random.default_rng(1)
    image = rng.standard_normal((1, h, w, 2)).astype(np.float32)
    got = np.asarray(grid_sample(jnp.asarray(image), jnp.asarray(grid)))
    np.testing.assert_allclose(got, ref_grid_sample(image, grid), atol=1e-5)


def test_grid_sample_reflection_matches_reference():
    rng = np.random.default_rng(2)
    image = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    grid = rng.uniform(-3.0, 3.0, (2, 8, 6, 2)).astype(np.float32)
    # Include exact borders, pixel centres and multiple-reflection points.
    grid[0, 0, :, 0] = [-1.0, 1.0, -3.0, 3.0, 1.0 + 1 / 7, -1.0 - 1 / 7]
    grid[0, 0, :, 1] = [-1.0, 1.0, 3.0, -3.0, 0.0, 0.2]
    got = np.asarray(grid_sample(jnp.asarray(image), jnp.asarray(grid), padding_mode="reflection"))
    want = ref_grid_sample(image, grid, padding_mode="reflection")
    # Same argument as for 'zeros' (convex weights, total exactly 1 after reflection) plus the
    # float32 rounding of the reflected coordinate (|coord| <= ~10, ulp ~1e-6, times a pixel
    # difference of a few units): 2e-5.
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)
    # Reflection never loses mass: a constant image stays constant everywhere.
    ones = jnp.ones((2, 5, 7, 1))
    np.testing.assert_allclose(
        np.asarray(grid_sample(ones, jnp.asarray(grid), padding_mode="reflection")), 1.0, atol=1e-6
    )


def test_grid_sample_rejects_unknown_padding():
    with pytest.raises(ValueError):
        grid_sample(jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 1, 1, 2)), padding_mode="border")


def _grid_away_from_cell_boundaries(rng, shape, in_h, in_w):
    """Grids whose unnormalised coordinates have fractional part in [0.2, 0.8] (the sample
    is then bilinear, hence linear in each coordinate, within +-0.2 px), including points
    whose corners are outside the image (integer part in [-1, size])."""
    ix = rng.integers(-1, in_w, shape) + rng.uniform(0.2, 0.8, shape)
    iy = rng.integers(-1, in_h, shape) + rng.uniform(0.2, 0.8, shape)
    x = (2 * ix + 1) / in_w - 1
    y = (2 * iy + 1) / in_h - 1
    return np.stack([x, y], -1)


def test_grid_sample_grad_wrt_grid_matches_finite_differences():
    rng = np.random.default_rng(3)
    in_h, in_w = 5, 7
    image = rng.standard_normal((2, in_h, in_w, 3)).astype(np.float32)
    grid = _grid_away_from_cell_boundaries(rng, (2, 4, 6), in_h, in_w).astype(np.float32)
    wts = rng.standard_normal((2, 4, 6, 3)).astype(np.float32)

    def per_point(g):  # each output point depends only on its own grid point
        return jnp.sum(grid_sample(jnp.asarray(image), g) * wts, axis=-1)

    grad = np.asarray(jax.grad(lambda g: jnp.sum(per_point(g)))(jnp.asarray(grid)))

    for axis in (0, 1):
        # eps = 0.01 in grid units is 0.01*size/2 <= 0.035 px < 0.2 px: no cell boundary is
        # crossed, so the function is exactly linear there and the central difference has no
        # truncation error. The float32 difference quotient then errs by about
        # ulp(|f| ~ 5) / (2 eps) ~ 5e-7/0.02 ~ 3e-5 (plus rounding of the perturbed grid),
        # against derivatives of size ~ size/2 * |pixel difference| ~ 10: atol 3e-4.
        eps = 0.01
        delta = np.zeros_like(grid)
        delta[..., axis] = eps
        fd32 = (np.asarray(per_point(jnp.asarray(grid + delta))) - np.asarray(per_point(jnp.asarray(grid - delta)))) / (
            2 * eps
        )
        np.testing.assert_allclose(grad[..., axis], fd32, atol=3e-4, rtol=1e-4)

        # Independent check: central differences of the float64 reference (exact up to
        # ~1e-12 since it is linear here); the float32 gradient is accurate to ~1e-6 relative.
        delta64 = np.zeros(grid.shape)
        delta64[..., axis] = 1e-4
        g64 = grid.astype(np.float64)
        fd64 = ((ref_grid_sample(image, g64 + delta64) - ref_grid_sample(image, g64 - delta64)) * wts).sum(-1) / 2e-4
        np.testing.assert_allclose(grad[..., axis], fd64, atol=1e-4, rtol=1e-5)
    assert np.all(np.isfinite(grad))
    assert np.any(np.abs(grad) > 1.0)  # non-trivial


# ------------------------------------------------------------------ resizing


@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_grid_sample_grad_wrt_image_is_the_sampling_transposed(padding_mode):
    """The output is linear in the image: its gradient must be the transposed sampling
    matrix (from the float64 reference, one basis image at a time) times the cotangent."""
    rng = np.random.default_rng(4)
    in_h, in_w = 4, 5
    grid = rng.uniform(-1.4, 1.4, (1, 3, 6, 2)).astype(np.float32)  # some corners outside
    cotangent = rng.standard_normal((1, 3, 6, 1)).astype(np.float32)
    image = jnp.asarray(rng.standard_normal((1, in_h, in_w, 1)), jnp.float32)
    _, vjp = jax.vjp(lambda im: grid_sample(im, jnp.asarray(grid), padding_mode), image)
    got = np.asarray(vjp(jnp.asarray(cotangent))[0]).ravel()
    basis = np.eye(in_h * in_w).reshape(-1, 1, in_h, in_w, 1)
    sampling = np.stack([ref_grid_sample(e, grid, padding_mode).ravel() for e in basis], axis=1)
    # Sums of at most 4 weights in [0, 1] times N(0, 1) cotangents per pixel, in float32.
    np.testing.assert_allclose(got, sampling.T @ cotangent.ravel().astype(np.float64), atol=1e-5, rtol=0)


def test_grid_sample_backward_does_not_keep_the_corners():
    """The gradient gathers the four corners again: XLA's temporaries for value and gradient
    are well below those of plain autodiff, which keeps 4 corner arrays of the output's size."""
    image = jax.ShapeDtypeStruct((1, 32, 32, 16), jnp.float32)
    grid = jax.ShapeDtypeStruct((1, 96, 96, 2), jnp.float32)

    def autodiff_grid_sample(image, grid):  # the same sampling, differentiated by JAX
        _, in_h, in_w, channels = image.shape
        ix = ((grid[..., 0] + 1.0) * in_w - 1.0) / 2.0
        iy = ((grid[..., 1] + 1.0) * in_h - 1.0) / 2.0
        x0, y0 = jnp.floor(ix), jnp.floor(iy)
        out = 0.0
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            wx, wy = (ix - x0 if dx else 1 - (ix - x0)), (iy - y0 if dy else 1 - (iy - y0))
            xc, yc = x0 + dx, y0 + dy
            inside = (xc >= 0) & (xc < in_w) & (yc >= 0) & (yc < in_h)
            index = (jnp.clip(yc, 0, in_h - 1) * in_w + jnp.clip(xc, 0, in_w - 1)).astype(jnp.int32)
            values = jnp.take_along_axis(image.reshape(1, -1, channels), index.reshape(1, -1, 1), axis=1)
            out = out + values.reshape(*grid.shape[:3], channels) * jnp.where(inside, wx * wy, 0.0)[..., None]
        return out

    def temporaries(sample):
        loss = lambda im, gr: jnp.sum(jnp.tanh(sample(im, gr)))  # noqa: E731
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(image, grid).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    corners = 4 * 96 * 96 * 16 * 4  # bytes
    ours, autodiff = temporaries(grid_sample), temporaries(autodiff_grid_sample)
    assert ours + corners // 2 < autodiff, (ours, autodiff)


@pytest.mark.parametrize("in_hw,out_hw", [((8, 8), (16, 16)), ((5, 7), (9, 13)), ((16, 16), (8, 8)), ((7, 9), (4, 5))])
def test_resize_bilinear_matches_reference(in_hw, out_hw):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2,) + in_hw + (3,)).astype(np.float32)
    got = np.asarray(resize_bilinear(jnp.asarray(x), *out_hw))
    assert got.shape == (2,) + out_hw + (3,)
    # Convex combination of 4 float32 N(0,1) values computed at HIGHEST precision: 1e-5.
    np.testing.assert_allclose(got, ref_resize_bilinear(x, *out_hw), atol=1e-5, rtol=0)


def test_resize_bilinear_halving_is_2x2_mean_without_antialiasing():
    # align_corners=False halving samples at src = 2 d + 0.5: exactly the mean of each 2x2
    # block, i.e. no wider (anti-aliasing) support.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 16, 16, 2)).astype(np.float32)
    got = np.asarray(resize_bilinear(jnp.asarray(x), 8, 8))
    want = x.astype(np.float64).reshape(1, 8, 2, 8, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # A single bright pixel must influence only its own 2x2 block's output.
    impulse = np.zeros((1, 16, 16, 1), np.float32)
    impulse[0, 6, 6] = 1.0
    out = np.asarray(resize_bilinear(jnp.asarray(impulse), 8, 8))[0, ..., 0]
    assert np.count_nonzero(np.abs(out) > 1e-7) == 1
    np.testing.assert_allclose(out[3, 3], 0.25, atol=1e-6)


def test_resize_bilinear_same_size_is_identity():
    x = jnp.asarray(np.random.default_rng(6).standard_normal((1, 5, 6, 2)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(resize_bilinear(x, 5, 6)), np.asarray(x))


@pytest.mark.parametrize("hw", [(4, 6), (3, 5)])
def test_upsample_nearest_2x(hw):
    x = np.random.default_rng(7).standard_normal((2,) + hw + (3,)).astype(np.float32)
    got = np.asarray(upsample_nearest_2x(jnp.asarray(x)))
    h, w = hw
    want = np.zeros((2, 2 * h, 2 * w, 3), np.float32)
    for i in range(2 * h):
        for j in range(2 * w):
            want[:, i, j] = x[:, i // 2, j // 2]
    np.testing.assert_array_equal(got, want)  # pure copies: exact


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # a sum of views, a reduction
@pytest.mark.parametrize("hw", [(4, 6), (5, 7), (5, 6)])
def test_avg_pool_2x(hw, dtype):
    x = np.random.default_rng(8).standard_normal((2,) + hw + (3,)).astype(np.float32)
    x = np.asarray(jnp.asarray(x, dtype), np.float32)  # exact in dtype
    pooled = avg_pool_2x(jnp.asarray(x, dtype))
    assert pooled.dtype == dtype
    got = np.asarray(pooled, np.float32)
    h, w = hw
    assert got.shape == (2, h // 2, w // 2, 3)  # odd trailing row/column dropped
    want = np.zeros((2, h // 2, w // 2, 3))
    for i in range(h // 2):
        for j in range(w // 2):
            want[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].astype(np.float64).mean(axis=(1, 2))
    # Mean of 4 N(0,1) values: ~1e-7 in float32; in bfloat16, the mean's rounding (8 bits).
    tolerance = {"atol": 1e-6, "rtol": 0} if dtype == "float32" else {"atol": 2**-8, "rtol": 2**-8}
    np.testing.assert_allclose(got, want, **tolerance)


# ------------------------------------------------------------------ anti-aliasing


@pytest.mark.parametrize("scale,sigma,size", [(0.5, 0.5, 5), (0.25, 1.5, 13), (0.125, 3.5, 29)])
def test_antialias_kernel(scale, sigma, size):
    k = np.asarray(antialias_kernel(scale))
    assert k.shape == (size, size)
    assert 2 * round(4 * sigma) + 1 == size
    np.testing.assert_allclose(k.sum(), 1.0, atol=1e-6)
    # Centred at (k-1)/2: symmetric, maximum in the middle.
    c = (size - 1) // 2
    assert np.unravel_index(np.argmax(k), k.shape) == (c, c)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-9)
    np.testing.assert_allclose(k, k.T, atol=1e-9)
    # Normalised outer product of 1-D Gaussians of that sigma (float64 reference).
    t = np.arange(size) - c
    g = np.exp(-(t**2) / (2 * sigma**2))
    want = np.outer(g, g) / np.outer(g, g).sum()
    # float32 kernel entries <= ~0.4: 1e-7 absolute is a couple of ulp.
    np.testing.assert_allclose(k, want, atol=1e-7, rtol=1e-5)
    np.testing.assert_allclose(k, ref_gaussian_kernel(scale), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("scale", [1, 0.5, 0.25, 0.125])
def test_antialias_downsample_matches_scipy(scale):
    x = np.random.default_rng(9).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    got = np.asarray(antialias_downsample(jnp.asarray(x), scale))
    n = int(32 * scale)
    assert got.shape == (2, n, n, 3)
    if scale == 1:
        np.testing.assert_array_equal(got, x)
        return
    # Weighted sum (weights >= 0, total <= 1) of float32 values in [0, 1] at HIGHEST
    # precision, with a float32 kernel: ~1e-7 relative per term; 1e-6 absolute.
    np.testing.assert_allclose(got, ref_antialias_downsample(x, scale), atol=1e-6, rtol=0)


def test_antialias_downsample_non_divisible_size():
    x = np.random.default_rng(10).uniform(0, 1, (1, 30, 30, 2)).astype(np.float32)
    got = np.asarray(antialias_downsample(jnp.asarray(x), 0.25))
    assert got.shape == (1, 7, 7, 2)  # floor(30 * 0.25) = 7, not ceil = 8
    np.testing.assert_allclose(got, ref_antialias_downsample(x, 0.25), atol=1e-6, rtol=0)
    x = np.random.default_rng(11).uniform(0, 1, (1, 33, 31, 1)).astype(np.float32)
    got = np.asarray(antialias_downsample(jnp.asarray(x), 0.5))
    assert got.shape == (1, 16, 15, 1)
    np.testing.assert_allclose(got, ref_antialias_downsample(x, 0.5), atol=1e-6, rtol=0)


# ------------------------------------------------------------------ region Gaussians


def ref_region_gaussians(shift, covar, h, w):
    grid = ref_coordinate_grid(h, w)
    shift = np.asarray(shift, np.float64)
    b_, k_ = shift.shape[:2]
    out = np.zeros((b_, h, w, k_))
    for b in range(b_):
        for k in range(k_):
            if np.isscalar(covar):
                prec = np.eye(2) / covar
            else:
                prec = np.linalg.inv(np.asarray(covar, np.float64)[b, k])
            d = grid - shift[b, k]
            out[b, :, :, k] = np.exp(-0.5 * np.einsum("hwi,ij,hwj->hw", d, prec, d))
    return out


def test_region_gaussians_full_covariance():
    rng = np.random.default_rng(12)
    b_, k_, h, w = 2, 4, 6, 9
    shift = rng.uniform(-0.8, 0.8, (b_, k_, 2)).astype(np.float32)
    angle = rng.uniform(0, np.pi, (b_, k_))
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    eig = rng.uniform(0.05, 0.5, (b_, k_, 2))
    covar = (rot * eig[..., None, :]) @ np.swapaxes(rot, -1, -2)
    covar = covar.astype(np.float32)
    got = np.asarray(region_gaussians(jnp.asarray(shift), jnp.asarray(covar), h, w))
    assert got.shape == (b_, h, w, k_)
    # float32 exponent q (up to ~160) errs by ~1e-6 q relative; exp(-q/2) * q/2 * 1e-6 <= 4e-7.
    # Plus the float32 rounding of covar's inverse (condition <= 10): 1e-5 absolute.
    np.testing.assert_allclose(got, ref_region_gaussians(shift, covar, h, w), atol=1e-5, rtol=0)
    # The peak value is 1 when a shift sits on a grid point.
    shift2 = shift.copy()
    shift2[0, 0] = ref_coordinate_grid(h, w)[2, 3]
    got2 = np.asarray(region_gaussians(jnp.asarray(shift2), jnp.asarray(covar), h, w))
    np.testing.assert_allclose(got2[0, 2, 3, 0], 1.0, atol=1e-6)


def test_region_gaussians_scalar_variance():
    rng = np.random.default_rng(13)
    shift = rng.uniform(-1, 1, (2, 3, 2)).astype(np.float32)
    got = np.asarray(region_gaussians(jnp.asarray(shift), 0.01, 8, 5))
    # Exponent up to ~400 with float32 rounding ~1e-6 relative: see above, 1e-5.
    np.testing.assert_allclose(got, ref_region_gaussians(shift, 0.01, 8, 5), atol=1e-5, rtol=0)
    # Same as the full-covariance path with covar = 0.01 I.
    eye = np.broadcast_to(0.01 * np.eye(2, dtype=np.float32), (2, 3, 2, 2))
    full = np.asarray(region_gaussians(jnp.asarray(shift), jnp.asarray(eye), 8, 5))
    np.testing.assert_allclose(got, full, atol=1e-5)


# ------------------------------------------------------------------ small linear algebra


def test_inverse_2x2_matches_numpy():
    rng = np.random.default_rng(14)
    m = rng.standard_normal((3, 4, 2, 2)) + 3 * np.eye(2)  # well conditioned
    got = np.asarray(inverse_2x2(jnp.asarray(m, jnp.float32)))
    want = np.linalg.inv(m.astype(np.float32).astype(np.float64))
    # Condition numbers of a few units: float32 inverse accurate to ~1e-6 relative.
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got) @ m, np.broadcast_to(np.eye(2), m.shape), atol=1e-5)


@pytest.mark.parametrize("pts_shape", [(2, 7, 2), (2, 3, 4, 2)])
def test_apply_homogeneous_matches_numpy(pts_shape):
    rng = np.random.default_rng(15)
    mat = rng.standard_normal((2, 3, 3)) * 0.3
    mat[:, 2] = [0.1, -0.1, 1.0] + 0.05 * rng.standard_normal((2, 3))  # third coord ~1
    mat[:, :2, :2] += np.eye(2)
    pts = rng.uniform(-1, 1, pts_shape)
    mat32, pts32 = mat.astype(np.float32), pts.astype(np.float32)
    got = np.asarray(apply_homogeneous(jnp.asarray(mat32), jnp.asarray(pts32)))
    assert got.shape == pts_shape
    flat = pts32.astype(np.float64).reshape(2, -1, 2)
    want = np.zeros_like(flat)
    for b in range(2):
        for n in range(flat.shape[1]):
            v = mat32[b].astype(np.float64) @ np.array([flat[b, n, 0], flat[b, n, 1], 1.0])
            want[b, n] = v[:2] / v[2]
    # Values O(1), denominators in ~[0.6, 1.4]: float32 accurate to a few 1e-7; 1e-5.
    np.testing.assert_allclose(got, want.reshape(pts_shape), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ original-implementation fixture


@pytest.fixture(scope="module")
def tiny():
    return (np.load(FIXTURE / "inputs.npz"), np.load(FIXTURE / "outputs.npz"))


def _nhwc(x):
    return np.moveaxis(np.asarray(x), 1, -1)


@pytest.mark.parametrize(
    "image_key,out_key",
    [
        ("source", "flow.downsampled_source"),
        ("source", "rp.source.downsampled_input"),
        ("driving", "rp.driving.downsampled_input"),
    ],
)
def test_fixture_antialias_downsample(tiny, image_key, out_key):
    inputs, outputs = tiny
    got = np.asarray(antialias_downsample(jnp.asarray(_nhwc(inputs[image_key])), 0.5))
    # Both float32 (PyTorch conv vs XLA conv, values in [0, 1]): summation order only, 1e-5.
    np.testing.assert_allclose(got, _nhwc(outputs[out_key]), atol=1e-5, rtol=0)


def test_fixture_deformed_source(tiny):
    _, outputs = tiny
    src = _nhwc(outputs["flow.downsampled_source"])  # (2, 32, 32, 3)
    motion = np.asarray(outputs["flow.sparse_motion"])  # (2, 6, 32, 32, 2)
    want = np.asarray(outputs["flow.deformed_source"])  # (2, 6, 3, 32, 32)
    b_, k1 = motion.shape[:2]
    image = np.repeat(src[:, None], k1, axis=1).reshape((b_ * k1,) + src.shape[1:])
    got = np.asarray(grid_sample(jnp.asarray(image), jnp.asarray(motion.reshape((b_ * k1,) + motion.shape[2:]))))
    got = np.moveaxis(got.reshape(b_, k1, 32, 32, 3), -1, 2)
    # float32 on both sides, same formula: differences are ulp-level, 1e-5.
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
