"""Tests of mraa_jax.svd.svd_2x2, the LAPACK-sign-exact 2x2 SVD.

Oracles:
* ``numpy.linalg.svd``: numpy runs LAPACK ``dgesdd`` in float64 even for
  float32 input, so it is the exact SVD of our float32 matrices up to ~1e-16,
  with LAPACK's sign convention.
* ``scipy.linalg.lapack.sgesdd``: the float32 routine ``torch.svd`` calls on
  CPU.  It differs from numpy's float64 run on near-diagonal matrices, where
  float32 xBDSQR treats the off-diagonal as negligible and splits.
* the ``mraa_tiny`` fixture: ``torch.svd`` output of the original model.
* ``torch.svd`` itself, when torch is importable.

Tolerances come from the conditioning of the SVD.  With u = 2^-24 the float32
unit roundoff, a backward-stable float32 SVD has error ``||dC|| <= k u ||C||``
for a small k.  Singular values are perfectly conditioned (Weyl), so
``|ds_i| <= k u s_0``; singular vectors move by at most ``||dC|| / (s_0 - s_1)``,
i.e. ``|dU| <= k u / relgap`` with ``relgap = (s_0 - s_1) / s_0``.  The xBDSQR
split drops an off-diagonal below ``10 u s_1 / sqrt(2)``, which moves U by less
than ``8 u / relgap``, within the same bound.  We use k = 32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURE

from mraa_jax.svd import svd_2x2

U32 = 2.0**-24  # float32 unit roundoff
K = 32  # backward-error multiple allowed, see the module docstring


_svd = jax.jit(svd_2x2)
_CHUNK = 20_000


def _svd_np(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """jit-ed svd_2x2 on any number of matrices, in fixed-size chunks.

    Every call compiles the same (20000, 2, 2) program (compilation, not
    running, dominates this file's time); padding is with identities.
    """
    c = np.asarray(c)
    flat = c.reshape(-1, 2, 2)
    n = len(flat)
    padded = np.broadcast_to(np.eye(2, dtype=c.dtype), (-(-n // _CHUNK) * _CHUNK, 2, 2)).copy()
    padded[:n] = flat
    outs = [_svd(padded[i : i + _CHUNK]) for i in range(0, len(padded), _CHUNK)]
    u = np.concatenate([np.asarray(o[0]) for o in outs])[:n]
    s = np.concatenate([np.asarray(o[1]) for o in outs])[:n]
    return u.reshape(c.shape), s.reshape(c.shape[:-1])


def _rotations(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _spd(theta, s0, s1) -> np.ndarray:
    """Exactly symmetric float32 matrices R diag(s0, s1) R^T."""
    r = _rotations(theta)
    c = r @ (np.stack([s0, s1], -1)[..., None] * np.swapaxes(r, -1, -2))
    c = c.astype(np.float32)
    c[..., 1, 0] = c[..., 0, 1]
    return c


def _separated_spd(rng: np.random.Generator, n: int) -> np.ndarray:
    """n SPD matrices with relative eigen-gap >= 1e-2, random orientation.

    Half with both eigenvalues log-uniform in [1e-4, 1] (pairs closer than the
    gap rejected), half with s0 log-uniform in [1e-4, 1] and the relative gap
    log-uniform in [1e-2, 1), to put many samples near the 1e-2 limit.
    """
    half = n // 2
    lo, hi = np.log(1e-4), 0.0
    s = np.exp(rng.uniform(lo, hi, (4 * half, 2)))
    s0, s1 = s.max(-1), s.min(-1)
    keep = (s0 - s1) / s0 >= 1.01e-2  # margin for the float32 rounding of the entries
    s0a, s1a = s0[keep][:half], s1[keep][:half]
    assert s0a.shape == (half,)
    s0b = np.exp(rng.uniform(lo, hi, n - half))
    s1b = s0b * (1 - np.exp(rng.uniform(np.log(1.01e-2), 0, n - half)))
    s0, s1 = np.concatenate([s0a, s0b]), np.concatenate([s1a, s1b])
    return _spd(rng.uniform(0, 2 * np.pi, n), s0, s1)


def _column_dots(u, ref):
    """(..., 2) dot products of corresponding columns: > 0 where signs agree."""
    return np.sum(np.asarray(u, np.float64) * np.asarray(ref, np.float64), axis=-2)


@functools.cache
def _separated_set():
    c = _separated_spd(np.random.default_rng(1234), 100_000)
    u, s = _svd_np(c)
    return c, u, s


# 1. Against numpy (float64 dgesdd) on 100,000 well-separated SPD matrices.


def test_matches_numpy_on_separated_spd():
    c, u, s = _separated_set()
    assert u.dtype == np.float32 and s.dtype == np.float32
    assert u.shape == (100_000, 2, 2) and s.shape == (100_000, 2)
    u_np, s_np, _ = np.linalg.svd(c.astype(np.float64))
    relgap = (s_np[:, 0] - s_np[:, 1]) / s_np[:, 0]
    assert relgap.min() >= 1e-2

    # Singular values: |ds_i| <= 32 u s_0 (~1.9e-6 s_0).
    s_err = np.abs(s - s_np).max(-1) / s_np[:, 0]
    assert s_err.max() <= K * U32, s_err.max()
    assert np.all(s[:, 0] >= s[:, 1]) and np.all(s >= 0)

    # Singular vectors: |dU| <= 32 u / relgap (<= 1.9e-4 at the 1e-2 limit).
    u_err = np.abs(u - u_np).max((-2, -1))
    assert np.all(u_err <= K * U32 / relgap), (u_err * relgap).max() / U32

    # Every column sign, on every matrix.
    dots = _column_dots(u, u_np)
    assert np.all(dots > 0), np.argwhere(dots <= 0)[:10]
    # and the reflection form U = [[p, q], [q, -p]] of the well-separated case.
    np.testing.assert_allclose(u[:, 0, 0], -u[:, 1, 1], rtol=0, atol=K * U32)
    np.testing.assert_allclose(u[:, 0, 1], u[:, 1, 0], rtol=0, atol=K * U32)


def test_matches_float32_lapack_sgesdd():
    """Signs agree with float32 LAPACK (the routine torch.svd calls), near-diagonal cases included."""
    from scipy.linalg import lapack

    rng = np.random.default_rng(99)
    n = 20_000
    # Orientations within 1e-9 .. 1e-3 rad of an axis: the off-diagonal is tiny
    # and float32 xBDSQR often splits the bidiagonal, where numpy's float64
    # dgesdd does not (see test_near_diagonal_follows_float32_lapack).
    axis = rng.choice([0, 0.5 * np.pi, np.pi, 1.5 * np.pi], n)
    offset = rng.choice([-1.0, 1.0], n) * np.exp(rng.uniform(np.log(1e-9), np.log(1e-3), n))
    s0 = np.exp(rng.uniform(np.log(1e-4), 0, n))
    s1 = s0 * (1 - np.exp(rng.uniform(np.log(1e-2), 0, n)))
    near_axis = _spd(axis + offset, s0, s1)
    c_sep, u_sep, _ = _separated_set()
    c = np.concatenate([c_sep[:n], near_axis])
    u = np.concatenate([u_sep[:n], _svd_np(near_axis)[0]])

    ref = np.stack([lapack.sgesdd(m)[0] for m in c])
    assert ref.dtype == np.float32
    dots = _column_dots(u, ref)
    assert np.all(dots > 0), np.argwhere(dots <= 0)[:10]
    assert np.abs(u - ref).max() <= K * U32 / 1e-2  # both relative gaps >= 1e-2


def test_near_diagonal_follows_float32_lapack():
    """Where float32 and float64 LAPACK differ, we follow float32 (torch.svd).

    c01 / c00 ~ 1.07e-7 is below sBDSQR's split threshold (10 u min(s) /
    sqrt(2) relative), so float32 LAPACK drops the off-diagonal: U = H·swap,
    whose second column is (-1, -1e-7).  Float64 dgesdd (numpy) resolves the
    1e-5 rotation and returns (1, -1e-5).  torch.svd on this matrix gives
    [[-1.0687637e-07, -1], [1, -1.0687637e-07]].
    """
    c = np.array([[2.6569976e-02, 2.8397025e-09], [2.8397025e-09, 2.6838360e-02]], np.float32)
    u, s = _svd_np(c)
    expected = np.array([[-1.0687637e-07, -1.0], [1.0, -1.0687637e-07]], np.float32)
    np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6, atol=0)
    u_np = np.linalg.svd(c)[0]
    assert _column_dots(u, u_np)[1] < 0  # numpy's float64 choice differs here


# 2. Exactly diagonal and isotropic inputs.


def test_diagonal_inputs():
    rng = np.random.default_rng(7)
    d = rng.uniform(0, 1, (1000, 2)).astype(np.float32)
    d[:100, 1] = d[:100, 0]  # ties
    d[100:110] = 0
    c = np.zeros((1000, 2, 2), np.float32)
    c[:, 0, 0], c[:, 1, 1] = d[:, 0], d[:, 1]
    u, s = _svd_np(c)
    # LAPACK: zero subdiagonal -> xLARFG returns H = I; zero off-diagonal ->
    # xBDSQR splits; the sort swaps only on a strict '>'.
    expected = np.where((d[:, 0] >= d[:, 1])[:, None, None], np.eye(2), [[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(u, expected)
    assert not np.any(np.signbit(u))  # no -0.0 either
    np.testing.assert_array_equal(s, np.sort(d, -1)[:, ::-1])


def test_isotropic_inputs():
    # c = a I: LAPACK (torch.svd(a * torch.eye(2))) returns U = I, S = (a, a):
    # H = I, B = C splits, equal values are not swapped.
    a = np.array([0.0, 1e-30, 1e-12, 1e-4, 0.3, 1.0, 7.0, 1e20], np.float32)
    c = a[:, None, None] * np.eye(2, dtype=np.float32)
    u, s = _svd_np(c)
    np.testing.assert_array_equal(u, np.broadcast_to(np.eye(2), u.shape))
    np.testing.assert_array_equal(s, np.stack([a, a], -1))


# 3. Gradients.


def _loss(c, w, v):
    u, s = svd_2x2(c)
    return jnp.sum(u * w) + jnp.sum(s * v)


# value and gradient from one compiled program (compilation dominates the cost)
_batched_value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(_loss)))


def _batched_grad(c, w, v):
    return np.asarray(_batched_value_and_grad(c, w, v)[1])


def _batched_loss(c, w, v):
    return np.asarray(_batched_value_and_grad(c, w, v)[0])


_N_GRAD = 2000  # one batch size for all gradient tests: one compilation per dtype


def _grad_inputs(rng, n, dtype):
    """Well-separated inputs (relative gap in [0.1, 0.9]) and random weights."""
    s0 = np.exp(rng.uniform(np.log(0.1), 0, n))
    s1 = s0 * rng.uniform(0.1, 0.9, n)
    r = _rotations(rng.uniform(0, 2 * np.pi, n))
    c = r @ (np.stack([s0, s1], -1)[..., None] * np.swapaxes(r, -1, -2))
    c[..., 1, 0] = c[..., 0, 1]
    w, v = rng.normal(size=(n, 2, 2)), rng.normal(size=(n, 2))
    return c.astype(dtype), w.astype(dtype), v.astype(dtype)


def test_gradients_finite():
    rng = np.random.default_rng(3)
    c, w, v = _grad_inputs(rng, _N_GRAD - 8, np.float32)  # + 8 special inputs
    special = np.array(
        [
            [[2, 0], [0, 1]],  # diagonal
            [[1, 0], [0, 2]],  # diagonal, swapped
            [[1, 0], [0, 1]],  # isotropic
            [[0, 0], [0, 0]],
            [[1, 1], [1, 1]],  # rank 1
            [[1, 1e-8], [1e-8, 2]],  # bidiagonal splits
            [[1, 1e-7], [1e-7, 1]],  # nearly isotropic
            [[1e-14, 3e-15], [3e-15, 2e-14]],  # xGESDD scaling
        ],
        np.float32,
    )
    c = np.concatenate([c, special])
    w = np.concatenate([w, np.ones((len(special), 2, 2), np.float32)])
    v = np.concatenate([v, np.ones((len(special), 2), np.float32)])
    g = np.asarray(_batched_grad(c, w, v))
    assert g.dtype == np.float32
    assert np.all(np.isfinite(g))


def test_gradients_match_finite_differences_float64():
    rng = np.random.default_rng(5)
    c, w, v = _grad_inputs(rng, _N_GRAD, np.float64)
    with jax.enable_x64(True):
        g = np.asarray(_batched_grad(c, w, v))
        assert g.dtype == np.float64  # float64 inputs run the dgesdd mirror
        h = 1e-6
        fd = np.zeros_like(c)
        for i in range(2):
            for j in range(2):
                e = np.zeros((2, 2))
                e[i, j] = h
                fd[:, i, j] = (_batched_loss(c + e, w, v) - _batched_loss(c - e, w, v)) / (2 * h)
    # Central differences: truncation ~ h^2 |d3L/dc3| / 6 <= 1e-12 / gap^3 with
    # the absolute gap >= 0.01 here, plus roundoff ~ eps64 |L| / h ~ 1e-10 |L|.
    # Observed: ~1e-8 relative to the largest |dL/dc| of each matrix.
    scale = 1 + np.abs(fd).max((-2, -1), keepdims=True)
    np.testing.assert_array_less(np.abs(g - fd) / scale, 1e-6)

    # float32 gradients agree with float64 ones to float32 conditioning,
    # ~ u / relgap^2 ~ 1e-5 relative (observed ~8e-6).
    g32 = np.asarray(_batched_grad(*(x.astype(np.float32) for x in (c, w, v))))
    np.testing.assert_array_less(np.abs(g32 - g) / scale, 1e-4)


# 4. The original's torch.svd output in the mraa_tiny fixture.


@pytest.mark.parametrize("which", ["source", "driving"])
def test_fixture_region_params(which):
    out = np.load(FIXTURE / "outputs.npz")
    covar = out[f"rp.{which}.covar"]  # (B, K, 2, 2)
    u, s = _svd_np(covar)
    assert u.shape == covar.shape and s.shape == covar.shape[:-1]
    # the original flattens the batch: (B*K, 2, 2)
    np.testing.assert_allclose(u.reshape(-1, 2, 2), out[f"rp.{which}.u"], rtol=0, atol=1e-5)
    d = np.diagonal(out[f"rp.{which}.d"], axis1=-2, axis2=-1)
    np.testing.assert_allclose(np.sqrt(s).reshape(-1, 2), d, rtol=1e-6, atol=1e-7)


# Shapes, transformations, and what the computation is made of.


def test_batch_shapes_and_vmap():
    rng = np.random.default_rng(11)
    c = _separated_spd(rng, 60).reshape(3, 4, 5, 2, 2)
    u, s = _svd(c)  # jit on the (3, 4, 5, 2, 2) shape itself
    assert u.shape == (3, 4, 5, 2, 2) and s.shape == (3, 4, 5, 2)
    u_flat, s_flat = _svd_np(c.reshape(-1, 2, 2))
    np.testing.assert_array_equal(np.asarray(u).reshape(-1, 2, 2), np.asarray(u_flat))
    np.testing.assert_array_equal(np.asarray(s).reshape(-1, 2), np.asarray(s_flat))
    u_v, s_v = jax.jit(jax.vmap(jax.vmap(svd_2x2)))(c.reshape(12, 5, 2, 2))
    np.testing.assert_array_equal(np.asarray(u_v).reshape(-1, 2, 2), np.asarray(u_flat))
    np.testing.assert_array_equal(np.asarray(s_v).reshape(-1, 2), np.asarray(s_flat))
    u1, s1 = _svd(c[0, 0, 0])  # a single matrix
    np.testing.assert_array_equal(np.asarray(u1), np.asarray(u_flat[0]))
    np.testing.assert_array_equal(np.asarray(s1), np.asarray(s_flat[0]))


def test_jit_matches_op_by_op():
    """jit gives the same bits as evaluating op by op (each op rounded on its own).

    Op by op is what the LAPACK reference arithmetic does; under jit, XLA may
    fuse products into FMAs or rewrite divisions.  mraa_jax.svd guards against
    both; this catches a guard that stops working.
    """
    rng = np.random.default_rng(17)
    n = 20_000
    s0 = np.exp(rng.uniform(np.log(1e-4), 0, n))
    s1 = s0 * (1 - np.exp(rng.uniform(np.log(1e-7), 0, n)))
    c = _spd(rng.uniform(0, 2 * np.pi, n), s0, s1)
    c = np.concatenate([c, rng.normal(size=(n, 2, 2)).astype(np.float32)])  # general matrices too
    u_jit, s_jit = _svd_np(c)
    with jax.disable_jit():
        u_eager, s_eager = map(np.asarray, svd_2x2(c))
    np.testing.assert_array_equal(u_jit, u_eager)
    np.testing.assert_array_equal(s_jit, s_eager)


def test_float64_mirrors_dgesdd():
    """With x64, float64 inputs follow dgesdd: signs agree with numpy, near isotropy included."""
    rng = np.random.default_rng(23)
    n = 20_000
    s0 = np.exp(rng.uniform(np.log(1e-4), 0, n))
    s1 = s0 * (1 - np.exp(rng.uniform(np.log(1e-8), 0, n)))  # relative gaps 1e-8 .. 1
    r = _rotations(rng.uniform(0, 2 * np.pi, n))
    c = r @ (np.stack([s0, s1], -1)[..., None] * np.swapaxes(r, -1, -2))
    c[..., 1, 0] = c[..., 0, 1]
    with jax.enable_x64(True):
        u, s = map(np.asarray, jax.jit(svd_2x2)(c))
    assert u.dtype == np.float64
    u_np, s_np, _ = np.linalg.svd(c)
    assert np.all(_column_dots(u, u_np) > 0)
    assert np.all(np.abs(s - s_np) <= K * 2.0**-53 * s_np[:, :1])  # |ds_i| <= 32 u64 s_0


def _primitives(jaxpr) -> set[str]:
    """Names of all primitives in a jaxpr, nested jaxprs (jit, custom_jvp, ...) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    names |= _primitives(sub)
    return names


def test_only_elementwise_primitives():
    """No linalg, no custom calls, no host callbacks: the same program on every backend."""
    c = jnp.ones((3, 2, 2), jnp.float32)
    prims = _primitives(jax.make_jaxpr(svd_2x2)(c).jaxpr)
    prims |= _primitives(jax.make_jaxpr(jax.grad(lambda x: _loss(x, 1.0, 1.0)))(c).jaxpr)
    linalg = {
        "svd",
        "eig",
        "eigh",
        "qr",
        "geqrf",
        "geqp3",
        "householder_product",
        "cholesky",
        "cholesky_update",
        "lu",
        "lu_pivots_to_permutation",
        "triangular_solve",
        "schur",
        "hessenberg",
        "tridiagonal",
        "tridiagonal_solve",
        "dot_general",
    }
    assert not prims & linalg, prims & linalg
    assert not [p for p in prims if "callback" in p or "custom_call" in p or "ffi" in p], prims
    assert {"div", "sqrt", "select_n"} <= prims


# 5. Against torch.svd directly, near isotropy (only where torch is installed).


@pytest.mark.parametrize("gap", [1e-3, 1e-4, 1e-6])
def test_matches_torch_near_isotropy(gap):
    """Column signs agree with torch.svd at relative eigen-gaps down to 1e-6.

    (On the CPU this file was written on, U and S were even bit-identical to
    torch's, 1e6 matrices per gap; bits are not asserted, as they depend on
    the LAPACK build torch links.)
    """
    torch = pytest.importorskip("torch", reason="comparing with torch.svd needs the `convert` extra (torch)")
    rng = np.random.default_rng(int(-np.log10(gap)))
    n = 20_000
    s0 = np.exp(rng.uniform(np.log(1e-4), 0, n))
    c = _spd(rng.uniform(0, 2 * np.pi, n), s0, s0 * (1 - gap))
    u, s = _svd_np(c)
    u_t, s_t, _ = torch.svd(torch.from_numpy(c))
    u_t, s_t = u_t.numpy(), s_t.numpy()
    dots = _column_dots(u, u_t)
    assert np.all(dots > 0), np.argwhere(dots <= 0)[:10]
    np.testing.assert_allclose(s, s_t, rtol=K * U32, atol=0)
