"""A 2x2 SVD that reproduces LAPACK's singular-vector signs on every backend.

The original MRAA computes ``torch.svd`` of each region covariance on the CPU,
which calls LAPACK's ``sgesdd``.  The columns of U are only defined up to sign,
and the checkpoints were trained with LAPACK's choice of signs, so a
reimplementation has to make the same choice, on CPU, GPU and TPU alike, and
not whatever ``jnp.linalg.svd`` / cuSOLVER / the TPU eigensolver happen to pick.

For a 2x2 matrix, reference LAPACK takes this route:

* ``xGESDD``: scale the matrix if its largest entry is tiny or huge;
  bidiagonalise it (``xGEBRD`` -> ``xGEBD2``); compute the SVD of the
  bidiagonal (``xBDSDC`` -> ``xLASDQ`` -> ``xBDSQR``, since 2 is far below the
  divide-and-conquer size); multiply the bidiagonalising reflector back into U
  (``xORMBR``).
* ``xGEBD2``: a Householder reflector ``H`` (``xLARFG``) from the first column
  zeroes ``c10``; ``H`` applied to the second column (``xLARF``) gives
  ``B = H C = [[d1, e], [0, d2]]``.  The second reflector and both right-hand
  reflectors are trivial (``tau = 0``) for a 2x2.
* ``xBDSQR`` (n = 2): if ``|e|`` is below its relative threshold the matrix
  splits and ``U_B = I``; otherwise ``xLASV2(d1, e, d2)`` gives signed singular
  values and the left rotation ``U_B = [[csl, -snl], [snl, csl]]``.  Negative
  singular values are made positive by negating rows of V^T (U is never
  negated), then values are sorted decreasingly, swapping columns of U_B.
* ``U = H U_B``.

Every step below is written with elementwise ``jax.numpy`` operations only (no
``jnp.linalg``, no host callbacks), in the order and with the operations of
the reference routines, so that the rounding, and hence the signs in
near-isotropic cases, follow LAPACK.  Two guards keep XLA from changing that
rounding: ``_rounded`` stops products from being fused into multiply-adds, and
``_opaque`` / ``_rounded`` hide divisions from XLA's algebraic rewrites.  With
them, on the CPU, U and S are bit-identical to ``torch.svd`` (torch 2.13, MKL)
on millions of random SPD matrices, relative eigen-gaps down to 1e-7 included.

Branches are evaluated on "safe" inputs and selected with ``jnp.where`` (the
double-``where`` trick), so untaken branches never put NaN/inf into gradients.
Note that LAPACK's U is discontinuous where ``c10`` is exactly 0: there
``H = I`` and U = I (or the column swap), while for tiny ``c10 != 0`` U is
close to ``diag(-1, 1)``.  The gradient at such inputs is that of the ``H = I``
branch.

The arithmetic runs in the input's precision, promoted to at least float32:
float32 inputs mirror ``sgesdd`` (what torch uses for the original's float32
covariances); float64 inputs (with x64 enabled) mirror ``dgesdd``.

Limits: entries below the smallest normal number (|c| < 1.2e-38 in float32) are
flushed to zero by XLA, where LAPACK would rescale them; backends whose
division or square root is not correctly rounded (TPU) can differ from LAPACK
in the last bit, which can flip a sign only at exact ties of the comparisons
(xBDSQR's split threshold, the final sort).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["svd_2x2"]


class _Lamch(NamedTuple):
    """The xLAMCH machine constants the routines below use, for one dtype."""

    eps: np.floating  # xLAMCH('E'): relative machine epsilon, 2^-24 for float32
    prec: np.floating  # xLAMCH('P') = eps * base, 2^-23 for float32
    safmin: np.floating  # xLAMCH('S'): smallest normal number, 2^-126 for float32


def _lamch(dtype) -> _Lamch:
    """xLAMCH for ``dtype`` (IEEE, rounding to nearest)."""
    finfo = np.finfo(dtype)
    one = finfo.dtype.type
    return _Lamch(eps=one(finfo.eps) / one(2), prec=one(finfo.eps), safmin=one(finfo.tiny))


def _where_ok(ok: jax.Array, x: jax.Array, safe) -> jax.Array:
    """``x`` where ``ok``, else a harmless stand-in (first half of double-where)."""
    return jnp.where(ok, x, jnp.asarray(safe, x.dtype))


def _opaque(x: jax.Array) -> jax.Array:
    """``x``, hidden from XLA's algebraic simplifier.

    XLA rewrites ``a / const`` and ``a / broadcast(b)`` into ``a * (1 / b)``,
    and ``a / (b / c)`` into ``(a * c) / b``; either changes the rounding
    LAPACK's operation order gives.  A divisor passed through this barrier is
    divided by as written.
    """
    return jax.lax.optimization_barrier(x)


def _rounded(x: jax.Array) -> jax.Array:
    """``x``, rounded to working precision before it is used.

    XLA lets LLVM contract a product feeding an addition into one fused
    multiply-add, which skips the product's rounding.  The reference LAPACK
    build rounds every product, and with every product rounded this file gives
    torch's CPU results bit for bit.  The select (a no-op: NaN stays NaN) sits
    between the multiply and the add, so they cannot be fused.
    """
    return jnp.where(x == x, x, jnp.asarray(jnp.nan, x.dtype))


def _fsign(a, b) -> jax.Array:
    """Fortran ``SIGN(A, B)``: ``|A|`` if ``B >= 0``, else ``-|A|``.

    A negative-zero ``B`` counts as positive, as in the LAPACK torch links
    (MKL): ``torch.svd([[-0., 1], [1, 2]])`` gives the same U as for ``+0.``.
    """
    a = jnp.abs(a)
    return jnp.where(b >= 0, a, -a)


def _lapy2(x: jax.Array, y: jax.Array) -> jax.Array:
    """xLAPY2: ``sqrt(x^2 + y^2)`` as ``w * sqrt(1 + (z/w)^2)``, avoiding overflow."""
    xa, ya = jnp.abs(x), jnp.abs(y)
    w = jnp.maximum(xa, ya)
    z = jnp.minimum(xa, ya)
    trivial = (z == 0) | (w > jnp.finfo(w.dtype).max)
    w_s = _where_ok(~trivial, w, 1)
    q = _where_ok(~trivial, z, 0) / w_s
    return jnp.where(trivial, w, _rounded(w_s * jnp.sqrt(1 + _rounded(q * q))))


def _larfg(alpha: jax.Array, x: jax.Array):
    """xLARFG for n = 2: reflector ``H = I - tau [1, v][1, v]^T`` with ``H [alpha, x] = [beta, 0]``.

    ``beta = -sign(alpha) * hypot(alpha, x)``, ``tau = (beta - alpha) / beta``,
    ``v = x * (1 / (alpha - beta))``.  When ``x == 0``, ``H = I`` (``tau = 0``,
    ``beta = alpha``, ``x`` untouched).  The routine's rescaling loop for
    ``|beta| < safmin`` is not needed: xGESDD's scaling keeps entries above
    ``sqrt(safmin) / prec``.

    Returns ``(beta, tau, v)``.
    """
    xnorm = jnp.abs(x)  # xNRM2 of a single element
    trivial = xnorm == 0
    xnorm_s = _where_ok(~trivial, xnorm, 1)
    beta = -_fsign(_lapy2(alpha, xnorm_s), alpha)
    tau = (beta - alpha) / beta
    v = x * (1 / (alpha - beta))
    return (
        jnp.where(trivial, alpha, beta),
        jnp.where(trivial, jnp.zeros_like(tau), tau),
        jnp.where(trivial, x, v),
    )


def _larf(v: jax.Array, tau: jax.Array, y0: jax.Array, y1: jax.Array):
    """xLARF from the left on one column ``(y0, y1)``: ``H y`` with ``H = I - tau [1, v][1, v]^T``.

    Same operations as the reference: xGEMV forms ``w = y0 + y1 * v`` and xGER
    adds ``[1, v] * (-tau * w)``.  Like the reference, entries are left
    untouched (signed zeros included) where ``tau == 0``, where ``w == 0``, and
    in the second row where ``v == 0``.
    """
    w = y0 + _rounded(y1 * v)
    t = _rounded(-tau * w)
    skip = (tau == 0) | (w == 0)
    return (
        jnp.where(skip, y0, y0 + t),
        jnp.where(skip | (v == 0), y1, y1 + _rounded(v * t)),
    )


def _bdsqr_splits(d1: jax.Array, e: jax.Array, d2: jax.Array, lamch: _Lamch) -> jax.Array:
    """xBDSQR's convergence test for n = 2: True where ``e`` is negligible and B splits.

    Relative-accuracy mode: ``tol = max(10, min(100, eps^(-1/8))) * eps``, a
    lower bound ``sminoa`` of the smallest singular value from the recurrence
    ``mu = |d2| * (mu / (mu + |e|))``, and ``thresh = max(tol * sminoa / sqrt(n),
    maxitr * n * n * safmin)``.  B splits where ``|e| <= thresh``.
    """
    dtype = d1.dtype.type
    eps = lamch.eps
    tolmul = max(dtype(10), min(dtype(100), eps ** dtype(-0.125)))
    tol = dtype(tolmul * eps)
    n, maxitr = 2, 6
    floor = dtype(maxitr * dtype(n * dtype(n * lamch.safmin)))

    abse = jnp.abs(e)
    sminoa = jnp.abs(d1)
    zero = sminoa == 0  # the reference jumps straight to the scaling by sqrt(n)
    denom = _where_ok(~zero, sminoa + abse, 1)
    mu = jnp.abs(d2) * (sminoa / denom)
    sminoa = jnp.where(zero, sminoa, jnp.minimum(sminoa, mu))
    sminoa = sminoa / _opaque(jnp.full_like(sminoa, np.sqrt(dtype(n))))
    thresh = jnp.maximum(tol * sminoa, floor)
    return abse <= thresh


class _Lasv2(NamedTuple):
    ssmin: jax.Array
    ssmax: jax.Array
    snr: jax.Array
    csr: jax.Array
    snl: jax.Array
    csl: jax.Array


def _lasv2(f: jax.Array, g: jax.Array, h: jax.Array, eps) -> _Lasv2:
    """xLASV2: SVD of the upper-triangular ``[[f, g], [0, h]]``.

    ``[[csl, snl], [-snl, csl]] @ [[f, g], [0, h]] @ [[csr, -snr], [snr, csr]]
    = diag(ssmax, ssmin)``, with ``|ssmax| >= |ssmin|`` and the signs of
    ``ssmax``/``ssmin`` set by the routine's own convention.  The three
    reference branches (diagonal, very large ``|g|``, normal case with its
    sub-cases) are all evaluated on safe stand-in values and selected.
    """
    dtype = f.dtype
    one, zero = jnp.ones_like(f), jnp.zeros_like(f)

    # Order so that |ft| >= |ht|; PMAX marks the entry of largest magnitude.
    swap = jnp.abs(h) > jnp.abs(f)
    ft = jnp.where(swap, h, f)
    ht = jnp.where(swap, f, h)
    fa, ha = jnp.abs(ft), jnp.abs(ht)
    gt, ga = g, jnp.abs(g)

    diagonal = ga == 0
    ga_s = _where_ok(~diagonal, ga, 1)
    gt_s = _where_ok(~diagonal, gt, 1)
    g_largest = ~diagonal & (ga > fa)  # PMAX = 2
    huge_g = g_largest & (fa / ga_s < eps)
    normal = ~diagonal & ~huge_g

    # Very large |g|: ssmax ~ |g|, rotations from ratios.
    ha_big = ha > 1
    ssmin_huge = jnp.where(ha_big, fa / _opaque(ga_s / _where_ok(ha_big, ha, 1)), (fa / ga_s) * ha)
    slt_huge = ht / gt_s
    crt_huge = ft / gt_s

    # Normal case, on stand-ins (ft = 1, gt = 1, ht = 0) where not taken.
    ftn = _where_ok(normal, ft, 1)
    gtn = _where_ok(normal, gt, 1)
    htn = _where_ok(normal, ht, 0)
    fan, han = jnp.abs(ftn), jnp.abs(htn)
    d = fan - han
    l = jnp.where(d == fan, one, d / fan)  # noqa: E741 (LAPACK dlasv2's name); d == fa copes with infinite f or h
    m = _rounded(gtn / ftn)  # else XLA turns m / x into gtn / (ftn * x)
    t = 2 - l
    mm = _rounded(m * m)
    tt = _rounded(t * t)
    s = jnp.sqrt(tt + mm)
    l_zero = l == 0
    r = jnp.where(l_zero, jnp.abs(m), jnp.sqrt(_where_ok(~l_zero, _rounded(l * l) + mm, 1)))
    a = _rounded(dtype.type(0.5) * (s + r))
    ssmin_n = han / a
    ssmax_n = fan * a
    mm_zero = mm == 0  # m is tiny
    t_tiny = jnp.where(
        l_zero,
        _fsign(2 * one, ftn) * _fsign(one, gtn),
        gtn / _fsign(_where_ok(~l_zero, d, 1), ftn) + m / t,
    )
    t_gen = (m / (s + t) + m / _where_ok(~mm_zero, r + l, 1)) * (1 + a)
    t = jnp.where(mm_zero, t_tiny, t_gen)
    l = _rounded(jnp.sqrt(_rounded(t * t) + 4))  # noqa: E741 (as above); else XLA turns 2 / sqrt(.) into 2 * rsqrt(.)
    crt_n = 2 / l
    srt_n = t / l
    clt_n = (crt_n + _rounded(srt_n * m)) / a
    slt_n = (htn / ftn) * srt_n / a

    def pick(diag_val, huge_val, normal_val):
        return jnp.where(diagonal, diag_val, jnp.where(huge_g, huge_val, normal_val))

    ssmin = pick(ha, ssmin_huge, ssmin_n)
    ssmax = pick(fa, ga, ssmax_n)
    clt = pick(one, one, clt_n)
    crt = pick(one, crt_huge, crt_n)
    slt = pick(zero, slt_huge, slt_n)
    srt = pick(zero, one, srt_n)

    # Undo the f <-> h swap.
    csl = jnp.where(swap, srt, clt)
    snl = jnp.where(swap, crt, slt)
    csr = jnp.where(swap, slt, crt)
    snr = jnp.where(swap, clt, srt)

    # Signs of the singular values, from the entry of largest magnitude.
    tsign = jnp.where(
        g_largest,
        _fsign(one, snr) * _fsign(one, csl) * _fsign(one, g),
        jnp.where(
            swap,
            _fsign(one, snr) * _fsign(one, snl) * _fsign(one, h),
            _fsign(one, csr) * _fsign(one, csl) * _fsign(one, f),
        ),
    )
    ssmax = _fsign(ssmax, tsign)
    ssmin = _fsign(ssmin, tsign * _fsign(one, f) * _fsign(one, h))
    return _Lasv2(ssmin, ssmax, snr, csr, snl, csl)


def _gesdd_scale(c: jax.Array, lamch: _Lamch):
    """xGESDD's scaling: bring the largest entry into ``[smlnum, bignum]``.

    ``smlnum = sqrt(safmin) / prec`` (2^-40 for float32), ``bignum = 1/smlnum``.
    Returns the scaled matrix and the factor (xLASCL's ``cto / cfrom``) that
    maps the scaled singular values back.
    """
    dtype = c.dtype.type
    smlnum = dtype(np.sqrt(lamch.safmin) / lamch.prec)
    bignum = dtype(1) / smlnum
    anrm = jnp.max(jnp.abs(c), axis=(-2, -1))
    up = (anrm > 0) & (anrm < smlnum)
    down = anrm > bignum
    scaled = up | down
    target = jnp.where(up, smlnum, bignum).astype(c.dtype)
    anrm_s = _where_ok(scaled, anrm, 1)
    mul = jnp.where(scaled, target / anrm_s, 1)
    unscale = jnp.where(scaled, anrm_s / target, 1)
    return _rounded(c * mul[..., None, None]), scaled, unscale


def svd_2x2(c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SVD of 2x2 matrices with LAPACK's (``torch.svd`` on CPU) column signs.

    Reproduces LAPACK ``xGESDD`` (what ``torch.svd`` runs on the CPU) step by
    step with elementwise ops, so it gives the same U, signs included, on every
    backend; jit-able, vmappable and differentiable.

    Args:
      c: ``(..., 2, 2)`` matrices, in MRAA symmetric positive semi-definite
        region covariances (any real 2x2 works: column 0 is read as
        ``c[..., :, 0]``, as LAPACK sees the matrix).  Any leading batch
        shape; computed in the input's floating precision (at least float32).

    Returns:
      ``(u, s)``: ``u`` of shape ``(..., 2, 2)`` (columns are the left singular
      vectors, signs as xGESDD gives them) and ``s`` of shape ``(..., 2)``,
      decreasing and non-negative, so that ``c = u diag(s) v^T``.
    """
    c = jnp.asarray(c)
    if c.shape[-2:] != (2, 2):
        raise ValueError(f"svd_2x2 expects (..., 2, 2) matrices, got shape {c.shape}")
    dtype = jnp.promote_types(c.dtype, jnp.float32)
    c = c.astype(dtype)
    lamch = _lamch(dtype)

    c, scaled, unscale = _gesdd_scale(c, lamch)
    c00, c01 = c[..., 0, 0], c[..., 0, 1]
    c10, c11 = c[..., 1, 0], c[..., 1, 1]

    # xGEBD2: B = H C = [[d1, e], [0, d2]].
    d1, tau, v = _larfg(c00, c10)
    e, d2 = _larf(v, tau, c01, c11)

    # xBDSQR (n = 2): split, or xLASV2 on the 2x2 block.
    splits = _bdsqr_splits(d1, e, d2, lamch)
    sv = _lasv2(d1, e, d2, lamch.eps)
    one, zero = jnp.ones_like(d1), jnp.zeros_like(d1)
    s1 = jnp.where(splits, d1, sv.ssmax)
    s2 = jnp.where(splits, d2, sv.ssmin)
    csl = jnp.where(splits, one, sv.csl)
    snl = jnp.where(splits, zero, sv.snl)

    # xROT of U = I by (csl, snl): U_B = [[csl, -snl], [snl, csl]].
    ub00, ub10 = csl, snl
    ub01, ub11 = zero - snl, csl  # as xROT's c*0 - s*1: +0, never -0, when snl == 0
    # Make singular values positive (that negates rows of V^T; U is untouched),
    # then sort decreasingly, swapping the columns of U_B.
    s1 = jnp.where(s1 < 0, -s1, s1)  # `IF (D(I) .LT. ZERO)`: -0.0 stays -0.0
    s2 = jnp.where(s2 < 0, -s2, s2)
    order = s2 > s1
    ub00, ub01 = jnp.where(order, ub01, ub00), jnp.where(order, ub00, ub01)
    ub10, ub11 = jnp.where(order, ub11, ub10), jnp.where(order, ub10, ub11)
    s1, s2 = jnp.where(order, s2, s1), jnp.where(order, s1, s2)

    # xORMBR: U = H U_B, column by column.
    u00, u10 = _larf(v, tau, ub00, ub10)
    u01, u11 = _larf(v, tau, ub01, ub11)

    u = jnp.stack([jnp.stack([u00, u01], -1), jnp.stack([u10, u11], -1)], -2)
    s = jnp.stack([s1, s2], -1)
    s = jnp.where(scaled[..., None], s * unscale[..., None], s)
    return u, s
