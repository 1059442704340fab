"""Every variant of every MRAA module builds, runs under jax.jit, and has a property that could fail.

Blocks, region and background predictors, flow predictor, generator, AVD network and the
animation modes, each against the original's behaviour. Sizes are tiny (32x32 or 64x64 images,
block_expansion 4, max_features 16, 3 regions) and each case compiles once or twice:
the file is dominated by XLA compile time, not by arithmetic.

Conventions used below:
- Compiling a module's random initialisers costs 2-3 times its forward pass (every
  parameter gets its own PRNG fold-in and sampler). So most modules are built with
  `random_variables`: `module.init` is traced by `jax.eval_shape` (every variable is
  created, with its shape, and nothing is compiled) and filled on the host like
  PyTorch's default initialisation; the forward pass then runs under `jax.jit`.
  Where initial values are the property under test (the regression conv, the
  background fc layer, BatchNorm's state) the real `init` runs, under jit; the whole
  model's `MRAA.random` runs the real `init` of all four networks.
- Keys use the `unsafe_rbg` PRNG: it compiles several times faster than threefry on
  CPU (the values only have to be random, not reproducible across PRNGs).
- Computation is float32; NumPy references are float64. Each tolerance says why.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mraa_jax.modules.avd import AVDNetwork
from mraa_jax.modules.bg_predictor import BGMotionPredictor
from mraa_jax.modules.blocks import BatchNorm
from mraa_jax.modules.flow_predictor import (
    PixelwiseFlowPredictor,
    heatmap_representation,
    region_motion_affines,
    sparse_motions,
)
from mraa_jax.modules.generator import Generator
from mraa_jax.modules.region_predictor import RegionPredictor
from mraa_jax.region_params import RegionParams

KEY = jax.random.key(0, impl="unsafe_rbg")
K = 3  # regions
C = 3  # channels
B = 2  # batch
EPS = 1e-5  # BatchNorm epsilon (PyTorch's default, as in the original)

# jax.jit with LLVM's optimisation level 0: compiles ~30% faster; the code runs a few
# milliseconds at most. Results agree with the default level to float32 rounding
# (~2e-6 measured on a generator's output), below every tolerance used here.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def init_with_output(module, *args, **kwargs):
    """(output, variables) of `module` at initialisation, computed under jax.jit."""
    return jit(functools.partial(module.init_with_output, **kwargs))(KEY, *args)


def _fill_params(node, rng):
    if "kernel" in node:  # Conv or Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias included
        bound = 1.0 / math.sqrt(math.prod(node["kernel"].shape[:-1]))
        return {k: rng.uniform(-bound, bound, v.shape).astype(np.float32) for k, v in node.items()}
    if set(node) == {"scale", "bias"}:  # BatchNorm: near (1, 0), not exactly, so both matter
        return {
            "scale": rng.uniform(0.8, 1.2, node["scale"].shape).astype(np.float32),
            "bias": rng.uniform(-0.1, 0.1, node["bias"].shape).astype(np.float32),
        }
    return {k: _fill_params(v, rng) for k, v in node.items()}


def _fill_stats(node):
    if set(node) == {"mean", "var"}:  # BatchNorm's initial running statistics
        return {"mean": np.zeros(node["mean"].shape, np.float32), "var": np.ones(node["var"].shape, np.float32)}
    return {k: _fill_stats(v) for k, v in node.items()}


def random_variables(module, *args, seed=0, **kwargs):
    """Variables of the structure `module.init` creates, traced (not compiled) and filled on the host."""
    shapes = jax.eval_shape(functools.partial(module.init, **kwargs), KEY, *args)
    assert set(shapes) <= {"params", "batch_stats"}, set(shapes)
    rng = np.random.RandomState(seed)
    return {
        "params": _fill_params(shapes.get("params", {}), rng),
        "batch_stats": _fill_stats(shapes.get("batch_stats", {})),
    }


def build(module, *args, **kwargs):
    """(output, variables): `random_variables` and the forward pass under jax.jit."""
    variables = random_variables(module, *args, **kwargs)
    return jit(functools.partial(module.apply, **kwargs))(variables, *args), variables


def images(size, batch=B, seed=0):
    return jnp.asarray(np.random.RandomState(seed).uniform(0, 1, (batch, size, size, C)), jnp.float32)


def ref_grid(h, w):
    """(h, w, 2) float64 grid, x = 2j/(w-1) - 1, y = 2i/(h-1) - 1 (the original's coordinate grid)."""
    x = 2.0 * np.arange(w) / (w - 1) - 1.0
    y = 2.0 * np.arange(h) / (h - 1) - 1.0
    return np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)


def synthetic_params(seed, batch=B, keypoints_only=False):
    """Region params with centres in [-0.6, 0.6] and affines R(angle) diag(s), s in [0.1, 0.4].

    Angles span the full circle, so A[0, 0] (and that of relative affines) takes both signs.
    """
    rng = np.random.RandomState(seed)
    shift = rng.uniform(-0.6, 0.6, (batch, K, 2))
    if keypoints_only:
        return RegionParams(shift=jnp.asarray(shift, jnp.float32))
    angle = rng.uniform(-np.pi, np.pi, (batch, K))
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    affine = rot * rng.uniform(0.1, 0.4, (batch, K, 1, 2))
    covar = affine @ np.swapaxes(affine, -1, -2)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return RegionParams(shift=f32(shift), covar=f32(covar), affine=f32(affine))


def leaves_with_paths(tree):
    return [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


# =================================================================== 1. BatchNorm


def bn_reference(x, scale, bias, running_mean, running_var):
    """PyTorch's BatchNorm2d in float64 (momentum 0.1, unbiased running var): (train output, new mean, new var, eval output)."""
    c = x.shape[-1]
    flat = np.asarray(x, np.float64).reshape(-1, c)
    n = flat.shape[0]
    mean, var = flat.mean(0), flat.var(0)  # biased variance normalises
    train_out = (np.asarray(x, np.float64) - mean) / np.sqrt(var + EPS) * scale + bias
    new_mean = 0.9 * running_mean + 0.1 * mean
    new_var = 0.9 * running_var + 0.1 * var * n / (n - 1)  # unbiased variance is tracked
    eval_out = (np.asarray(x, np.float64) - running_mean) / np.sqrt(running_var + EPS) * scale + bias
    return train_out, new_mean, new_var, eval_out


def bn_inputs(shape, seed=0):
    """Inputs far from N(0, 1) per channel, and non-default scale, bias and running stats."""
    rng = np.random.RandomState(seed)
    c = shape[-1]
    x = (rng.randn(*shape) * rng.uniform(0.5, 3.0, c) + rng.uniform(-2.0, 2.0, c)).astype(np.float32)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    variables = {
        "params": {"scale": f32(rng.uniform(0.5, 2.0, c)), "bias": f32(rng.randn(c))},
        "batch_stats": {"mean": f32(rng.randn(c)), "var": f32(rng.uniform(0.5, 2.0, c))},
    }
    return x, variables


# float32 mean/variance over <= 100 values of magnitude <= ~10: relative error ~1e-6;
# 1e-5 is well below the effects tested (the unbiased factor n/(n-1) moves the running
# variance by >= 0.1% here, a missing pmean changes everything at the 10% level).
BN_TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (6, 7)], ids=["4d", "2d-avd"])
def test_batchnorm_train_and_eval_match_numpy(shape):
    x, variables = bn_inputs(shape)
    bn = BatchNorm()
    init_vars = bn.init(KEY, x, True)
    # Initial state: scale 1, bias 0, running mean 0, running var 1; init does not move them.
    np.testing.assert_array_equal(init_vars["params"]["scale"], np.ones(shape[-1]))
    np.testing.assert_array_equal(init_vars["params"]["bias"], np.zeros(shape[-1]))
    np.testing.assert_array_equal(init_vars["batch_stats"]["mean"], np.zeros(shape[-1]))
    np.testing.assert_array_equal(init_vars["batch_stats"]["var"], np.ones(shape[-1]))

    train = jit(lambda v, x: bn.apply(v, x, True, mutable=["batch_stats"]))
    evaluate = jit(lambda v, x: bn.apply(v, x, False))
    y, updated = train(variables, x)
    y_eval = evaluate(variables, x)
    p, s = variables["params"], variables["batch_stats"]
    ref_y, ref_mean, ref_var, ref_eval = bn_reference(x, p["scale"], p["bias"], s["mean"], s["var"])
    np.testing.assert_allclose(y, ref_y, **BN_TOL)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], ref_mean, **BN_TOL)
    np.testing.assert_allclose(updated["batch_stats"]["var"], ref_var, **BN_TOL)
    np.testing.assert_allclose(y_eval, ref_eval, **BN_TOL)


@pytest.mark.parametrize("shape", [(8, 3, 3, 5), (8, 5)], ids=["4d", "2d"])
def test_sync_batchnorm_over_shards_equals_unsharded(shape):
    x, variables = bn_inputs(shape, seed=1)
    x[shape[0] // 2 :] += 3.0  # the two shards have very different statistics
    sharded = x.reshape((2, shape[0] // 2) + shape[1:])
    sync = BatchNorm(axis_name="d")
    step = jit(jax.vmap(lambda v, x: sync.apply(v, x, True, mutable=["batch_stats"]), in_axes=(None, 0), axis_name="d"))
    y, updated = step(variables, sharded)
    p, s = variables["params"], variables["batch_stats"]
    ref_y, ref_mean, ref_var, _ = bn_reference(x, p["scale"], p["bias"], s["mean"], s["var"])
    np.testing.assert_allclose(np.asarray(y).reshape(shape), ref_y, **BN_TOL)
    for shard in range(2):  # every device ends with the statistics of the whole batch
        np.testing.assert_allclose(updated["batch_stats"]["mean"][shard], ref_mean, **BN_TOL)
        np.testing.assert_allclose(updated["batch_stats"]["var"][shard], ref_var, **BN_TOL)


def bn_relu_autodiff(x, scale, bias, axis_name=None):
    """Train-mode BatchNorm then ReLU in plain jnp, differentiated by JAX: the reference
    for BatchNorm's own backward pass."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes) if axis_name is None else jax.lax.pmean(x.mean(axes), axis_name)
    var = jnp.square(x - mean).mean(axes)
    var = var if axis_name is None else jax.lax.pmean(var, axis_name)
    return jax.nn.relu((x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias)


def bn_relu_ours(x, scale, bias, axis_name=None):
    variables = {
        "params": {"scale": scale, "bias": bias},
        "batch_stats": {"mean": jnp.zeros_like(scale), "var": jnp.ones_like(scale)},
    }
    out, _ = BatchNorm(axis_name=axis_name, relu=True).apply(variables, x, True, mutable=["batch_stats"])
    return out


@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (6, 7)], ids=["4d", "2d-avd"])
def test_batchnorm_gradients_match_autodiff(shape):
    """BatchNorm's hand-written backward pass (recomputing from its input) against JAX's
    autodiff of the same function, for the input, scale and bias."""
    x, variables = bn_inputs(shape, seed=2)
    scale, bias = variables["params"]["scale"], variables["params"]["bias"]
    weights = np.random.RandomState(3).randn(*shape).astype(np.float32)
    grads = lambda fn: jit(jax.grad(lambda *a: jnp.sum(fn(*a) * weights), argnums=(0, 1, 2)))(x, scale, bias)  # noqa: E731
    for got, want in zip(grads(bn_relu_ours), grads(bn_relu_autodiff)):
        # The same sums in another order, over <= 100 float32 terms of size <= ~10.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    assert np.any(np.asarray(bn_relu_ours(x, scale, bias)) == 0)  # the ReLU is exercised


def test_sync_batchnorm_gradients_match_autodiff():
    """Over a device axis the statistics are the devices' together; so are their gradients."""
    x, variables = bn_inputs((8, 3, 3, 5), seed=4)
    x[4:] += 3.0
    sharded = x.reshape(2, 4, 3, 3, 5)
    scale, bias = variables["params"]["scale"], variables["params"]["bias"]
    weights = np.random.RandomState(5).randn(*sharded.shape).astype(np.float32)

    def grads(fn):
        loss = lambda x, s, b, w: jnp.sum(fn(x, s, b, axis_name="d") * w)  # noqa: E731
        return jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(0, None, None, 0), axis_name="d"))(
            sharded, scale, bias, weights
        )

    for got, want in zip(grads(bn_relu_ours), grads(bn_relu_autodiff)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_batchnorm_backward_keeps_less_than_autodiff():
    """Three BatchNorm+ReLU layers: XLA's temporaries for value and gradient are well below
    autodiff's, which keeps each layer's x - mean (and ReLU mask) until the backward pass."""
    x = jax.ShapeDtypeStruct((4, 64, 64, 32), jnp.float32)
    params = jax.ShapeDtypeStruct((32,), jnp.float32)

    def temporaries(layer):
        def loss(x, scale, bias):
            for _ in range(3):
                x = jnp.sin(layer(x, scale, bias))
            return jnp.sum(x)

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, params, params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    activation = 4 * 64 * 64 * 32 * 4  # bytes of one layer's output
    ours, autodiff = temporaries(bn_relu_ours), temporaries(bn_relu_autodiff)
    assert ours + 2 * activation < autodiff, (ours, autodiff)


# =================================================================== 2. Region predictor

RP_CASES = {
    # name: (module kwargs, image size)
    # (num_blocks 2 unless said otherwise: 2 and 4 both run)
    "pca-4blocks": (dict(pca_based=True, estimate_affine=True, scale_factor=1.0, num_blocks=4), 32),
    "regression": (dict(pca_based=False, estimate_affine=True, scale_factor=0.5), 32),
    "keypoints": (dict(pca_based=False, estimate_affine=False, scale_factor=0.25), 64),
    "keypoints-pad0": (dict(pca_based=False, estimate_affine=False, scale_factor=0.5, pad=0), 64),
}


def region_predictor(name, **overrides):
    kwargs = dict(block_expansion=4, num_regions=K, num_channels=C, max_features=16, num_blocks=2, temperature=0.1)
    kwargs.update(RP_CASES[name][0], **overrides)
    return RegionPredictor(**kwargs)


@functools.cache
def run_region_predictor(name):
    """(module, variables, params, image) of one case, initialised once per session."""
    module = region_predictor(name)
    image = images(RP_CASES[name][1])
    # The regression case checks its conv's initial values: real init there.
    params, variables = (init_with_output if name == "regression" else build)(module, image)
    return module, variables, params, image


# Softmax and sums over <= 1024 float32 values: errors ~1e-6, so 1e-5 absolute.
RP_TOL = dict(rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(RP_CASES))
def test_region_predictor_variant(name):
    module, variables, params, _ = run_region_predictor(name)
    size = RP_CASES[name][1]
    hourglass_size = int(size * module.scale_factor)
    expected = hourglass_size - (6 if module.pad == 0 else 0)  # 7x7 conv without padding loses 6
    heatmap = np.asarray(params.heatmap, np.float64)
    assert heatmap.shape == (B, expected, expected, K)
    assert np.all(heatmap >= 0)
    np.testing.assert_allclose(heatmap.sum(axis=(1, 2)), 1.0, **RP_TOL)

    # Centres and covariances are moments over the heatmap's OWN grid (pad 0: the smaller one).
    grid = ref_grid(expected, expected)
    shift = np.einsum("bhwk,hwc->bkc", heatmap, grid)
    np.testing.assert_allclose(params.shift, shift, **RP_TOL)
    assert params.shift.shape == (B, K, 2) and np.all(np.abs(np.asarray(params.shift)) <= 1)

    tree = variables["params"]
    encoder = tree["predictor"]["encoder"]
    assert sorted(encoder) == [f"down_blocks_{i}" for i in range(module.num_blocks)]
    assert tree["regions"]["kernel"].shape == (7, 7, 4 + C, K)  # hourglass output: be + in channels
    # pca_based: the regression conv does not exist, whatever estimate_affine says.
    assert ("jacobian" in tree) == (module.estimate_affine and not module.pca_based)

    if module.pca_based:
        diff = grid[None, :, :, None, :] - shift[:, None, None]
        covar = np.einsum("bhwk,bhwki,bhwkj->bkij", heatmap, diff, diff)
        np.testing.assert_allclose(params.covar, covar, **RP_TOL)
        affine = np.asarray(params.affine, np.float64)
        # covar entries are <= ~0.35; a 2x2 SVD in float32 reconstructs them to ~1e-6.
        np.testing.assert_allclose(affine @ np.swapaxes(affine, -1, -2), params.covar, **RP_TOL)
    elif module.estimate_affine:
        kernel, bias = tree["jacobian"]["kernel"], tree["jacobian"]["bias"]
        np.testing.assert_array_equal(kernel, np.zeros_like(kernel))
        np.testing.assert_array_equal(bias, [1.0, 0.0, 0.0, 1.0])
        # affine = sum(heatmap) * I, and the heatmap sums to 1 up to float32 rounding.
        identity = np.broadcast_to(np.eye(2), (B, K, 2, 2))
        np.testing.assert_allclose(params.affine, identity, **RP_TOL)
        np.testing.assert_allclose(params.covar, identity, **RP_TOL)
    else:
        assert params.affine is None and params.covar is None


def test_region_regression_reads_jacobian_row_major():
    """With a zero kernel and bias [a, b, c, d], every region's affine is [[a, b], [c, d]]."""
    module, variables, _, image = run_region_predictor("regression")
    bias = np.array([0.7, -0.3, 0.2, 1.4], np.float32)
    variables = jax.tree_util.tree_map(lambda x: x, variables)  # a copy to edit
    variables["params"]["jacobian"]["bias"] = bias
    params = jit(module.apply)(variables, image)
    expected = np.broadcast_to(bias.reshape(2, 2), (B, K, 2, 2))
    # |values| <= 1.4 times a heatmap sum of 1 +- 1e-6.
    np.testing.assert_allclose(params.affine, expected, **RP_TOL)
    np.testing.assert_allclose(params.covar, expected @ np.swapaxes(expected, -1, -2), **RP_TOL)


def test_region_temperature_sharpens_heatmap():
    module, variables, params, image = run_region_predictor("keypoints")
    colder = region_predictor("keypoints", temperature=module.temperature / 4)
    sharp = jit(colder.apply)(variables, image)
    np.testing.assert_allclose(np.asarray(sharp.heatmap).sum(axis=(1, 2)), 1.0, **RP_TOL)
    # Same logits, lower temperature: the peak of every softmax strictly grows.
    assert np.all(np.asarray(sharp.heatmap).max(axis=(1, 2)) > np.asarray(params.heatmap).max(axis=(1, 2)))


# =================================================================== 3. Background motion predictor


def bg_predictor(bg_type):
    return BGMotionPredictor(block_expansion=4, num_channels=C, max_features=16, num_blocks=1, bg_type=bg_type)


def test_bg_zero_is_identity_without_params():
    out, variables = init_with_output(bg_predictor("zero"), images(32), images(32, seed=1))
    assert jax.tree_util.tree_leaves(variables) == []
    np.testing.assert_array_equal(out, np.broadcast_to(np.eye(3), (B, 3, 3)))


@pytest.mark.parametrize("bg_type", ["shift", "affine", "perspective"])
def test_bg_predictor_identity_at_init_and_fills_matrix(bg_type):
    module = bg_predictor(bg_type)
    source, driving = images(32), images(32, seed=1)
    out, variables = init_with_output(module, source, driving)
    # Weight 0, bias = identity: 0 * finite features is exactly 0, so the identity is exact.
    np.testing.assert_array_equal(out, np.broadcast_to(np.eye(3), (B, 3, 3)))
    n = {"shift": 2, "affine": 6, "perspective": 8}[bg_type]
    fc = variables["params"]["fc"]
    assert fc["kernel"].shape == (8, n)  # deepest (only) encoder level: min(16, 4 * 2) channels
    np.testing.assert_array_equal(fc["kernel"], np.zeros((8, n)))

    bias = np.random.RandomState(3).randn(n).astype(np.float32)
    variables = jax.tree_util.tree_map(lambda x: x, variables)
    variables["params"]["fc"]["bias"] = bias
    apply = jit(module.apply)
    out = np.asarray(apply(variables, source, driving))
    expected = np.eye(3, dtype=np.float32)
    if bg_type == "shift":
        expected[0:2, 2] = bias
    else:
        expected[0:2, :] = bias[:6].reshape(2, 3)
        if bg_type == "perspective":
            expected[2, 0:2] = bias[6:8]
    np.testing.assert_array_equal(out, np.broadcast_to(expected, (B, 3, 3)))  # exact: kernel still 0

    # The encoder is wired to the images: with a non-zero kernel the matrix depends on them.
    variables["params"]["fc"]["kernel"] = np.random.RandomState(4).randn(8, n).astype(np.float32)
    assert not np.allclose(apply(variables, source, driving), apply(variables, source, source), atol=1e-4)


def test_bg_unknown_type_raises():
    with pytest.raises(ValueError, match="'homography'"):
        bg_predictor("homography").init(KEY, images(32), images(32))


# =================================================================== 4. Pixelwise flow predictor

FLOW_CASES = {
    # name: (module kwargs, keypoints only, with a background matrix)
    "covar-deformed-occ-revert": (
        dict(use_covar_heatmap=True, use_deformed_source=True, estimate_occlusion_map=True, revert_axis_swap=True),
        False,
        True,
    ),
    "var-heatmaponly": (
        dict(use_covar_heatmap=False, use_deformed_source=False, estimate_occlusion_map=False, revert_axis_swap=False),
        False,
        False,
    ),
    "keypoints-only": (
        dict(use_covar_heatmap=False, use_deformed_source=True, estimate_occlusion_map=False, revert_axis_swap=True),
        True,
        False,
    ),
}

BG_MATRIX = jnp.asarray(
    np.broadcast_to([[1.05, 0.1, 0.05], [-0.08, 0.95, -0.1], [0.02, -0.03, 1.0]], (B, 3, 3)), jnp.float32
)


@pytest.mark.parametrize("name", list(FLOW_CASES))
def test_flow_predictor_variant(name):
    kwargs, keypoints_only, with_bg = FLOW_CASES[name]
    module = PixelwiseFlowPredictor(
        block_expansion=4, num_blocks=2, max_features=16, num_regions=K, num_channels=C, scale_factor=0.5, **kwargs
    )
    driving, source = (
        synthetic_params(1, keypoints_only=keypoints_only),
        synthetic_params(2, keypoints_only=keypoints_only),
    )
    bg = BG_MATRIX if with_bg else None
    out, variables = build(module, images(32), driving, source, bg)

    flow = np.asarray(out["optical_flow"])
    assert flow.shape == (B, 16, 16, 2) and np.all(np.isfinite(flow))
    # The flow is a softmax-weighted mix of the K+1 sparse motions: inside their per-pixel range
    # (float32 weights summing to 1 +- 1e-6 times coordinates of magnitude <= ~10).
    motions = np.asarray(sparse_motions(driving, source, bg, 16, 16, module.revert_axis_swap))
    assert np.all(flow >= motions.min(axis=1) - 1e-5) and np.all(flow <= motions.max(axis=1) + 1e-5)

    tree = variables["params"]
    in_channels = (K + 1) * (C + 1) if module.use_deformed_source else K + 1
    assert tree["hourglass"]["encoder"]["down_blocks_0"]["conv"]["kernel"].shape == (3, 3, in_channels, 8)
    assert tree["mask"]["kernel"].shape == (7, 7, 4 + in_channels, K + 1)
    assert ("occlusion" in tree) == module.estimate_occlusion_map
    assert ("occlusion_map" in out) == module.estimate_occlusion_map
    if module.estimate_occlusion_map:
        occlusion = np.asarray(out["occlusion_map"])
        assert occlusion.shape == (B, 16, 16, 1) and np.all((occlusion > 0) & (occlusion < 1))


# Sparse motions are a few float32 products of values <= ~10 in magnitude: errors ~1e-6.
MOTION_TOL = dict(rtol=0, atol=1e-5)


def test_sparse_motions_keypoints_are_translations():
    driving, source = synthetic_params(1, keypoints_only=True), synthetic_params(2, keypoints_only=True)
    motions = np.asarray(sparse_motions(driving, source, None, 12, 10, True))
    grid = ref_grid(12, 10)
    assert motions.shape == (B, K + 1, 12, 10, 2)
    np.testing.assert_allclose(motions[:, 0], np.broadcast_to(grid, (B, 12, 10, 2)), **MOTION_TOL)
    d, s = np.asarray(driving.shift)[:, :, None, None], np.asarray(source.shift)[:, :, None, None]
    np.testing.assert_allclose(motions[:, 1:], grid - d + s, **MOTION_TOL)


def test_sparse_motions_identical_params_are_identity():
    params = synthetic_params(5)
    grid = np.broadcast_to(ref_grid(12, 10), (B, K + 1, 12, 10, 2))
    for revert in (False, True):
        np.testing.assert_allclose(sparse_motions(params, params, None, 12, 10, revert), grid, **MOTION_TOL)
    heatmap = np.asarray(heatmap_representation(params, params, 12, 10, True, 0.01))
    assert heatmap.shape == (B, 12, 10, K + 1)
    np.testing.assert_array_equal(heatmap, 0.0)  # same Gaussians subtracted: exactly zero


@pytest.mark.parametrize("revert", [False, True])
def test_sparse_motions_affine_and_background_match_numpy(revert):
    driving, source = synthetic_params(1), synthetic_params(2)
    relative = np.asarray(source.affine, np.float64) @ np.linalg.inv(np.asarray(driving.affine, np.float64))
    signs = np.sign(relative[..., 0:1, 0:1])
    assert (signs < 0).any() and (signs > 0).any(), "test data must exercise both signs"
    if revert:
        relative = relative * signs
    np.testing.assert_allclose(region_motion_affines(driving, source, revert), relative, rtol=0, atol=1e-5)

    motions = np.asarray(sparse_motions(driving, source, BG_MATRIX, 12, 10, revert))
    grid = ref_grid(12, 10)
    d, s = np.asarray(driving.shift)[:, :, None, None], np.asarray(source.shift)[:, :, None, None]
    expected = np.einsum("bkij,bkhwj->bkhwi", relative, grid - d) + s
    np.testing.assert_allclose(motions[:, 1:], expected, **MOTION_TOL)
    homogeneous = np.concatenate([grid, np.ones((12, 10, 1))], -1) @ np.asarray(BG_MATRIX, np.float64)[0].T
    np.testing.assert_allclose(
        motions[:, 0], np.broadcast_to(homogeneous[..., :2] / homogeneous[..., 2:], (B, 12, 10, 2)), **MOTION_TOL
    )


def test_revert_axis_swap_sign_of_zero_is_zero():
    """The original's quirk: sign(0) = 0, so a relative affine with [0, 0] == 0 becomes the zero matrix."""
    eye = jnp.eye(2)[None, None]
    swap = jnp.asarray([[[[0.0, 1.0], [1.0, 0.0]]]])
    driving = RegionParams(shift=jnp.zeros((1, 1, 2)), affine=eye)
    source = RegionParams(shift=jnp.zeros((1, 1, 2)), affine=swap)
    np.testing.assert_array_equal(region_motion_affines(driving, source, True), np.zeros((1, 1, 2, 2)))
    np.testing.assert_array_equal(region_motion_affines(driving, source, False), swap)


# =================================================================== 5. Generator

GEN_CASES = {
    # name: (num_down_blocks, num_bottleneck_blocks, skips, estimate_occlusion_map, revert_axis_swap)
    "n1-b0-skips-noocc": (1, 0, True, False, True),
    "n2-b2-skips-occ": (2, 2, True, True, False),
    "n3-b2-noskips-occ": (3, 2, False, True, True),
}


def generator(name):
    n, bottleneck, skips, occlusion, revert = GEN_CASES[name]
    # A one-level hourglass keeps compilation short; flow predictor variants are tested above.
    flow = dict(
        block_expansion=4,
        max_features=16,
        num_blocks=1,
        scale_factor=0.5,
        use_covar_heatmap=True,
        estimate_occlusion_map=occlusion,
    )
    return Generator(
        num_channels=C,
        num_regions=K,
        block_expansion=4,
        max_features=16,
        num_down_blocks=n,
        num_bottleneck_blocks=bottleneck,
        pixelwise_flow_predictor_params=tuple(sorted(flow.items())),
        skips=skips,
        revert_axis_swap=revert,
    )


GEN_INPUTS = (images(32), synthetic_params(1), synthetic_params(2))  # source image, driving, source params


@functools.cache
def run_generator(name):
    module = generator(name)
    out, variables = build(module, *GEN_INPUTS)
    return module, variables, out


@pytest.mark.parametrize("name", list(GEN_CASES))
def test_generator_variant(name):
    module, variables, out = run_generator(name)
    n, bottleneck, skips, occlusion, _ = GEN_CASES[name]
    prediction = np.asarray(out["prediction"])
    assert prediction.shape == (B, 32, 32, C) and np.all((prediction >= 0) & (prediction <= 1))
    assert out["deformed"].shape == (B, 32, 32, C)
    assert out["optical_flow"].shape == (B, 16, 16, 2)
    if occlusion:
        assert out["occlusion_map"].shape == (B, 16, 16, 1)
    else:
        assert out["occlusion_map"] is None

    # The generator's channel arithmetic, as in the original (min(max_features, block_expansion * 2**i)).
    tree = variables["params"]
    ch = lambda i: min(16, 4 * 2**i)  # noqa: E731
    assert tree["first"]["conv"]["kernel"].shape == (7, 7, C, 4)
    for i in range(n):
        assert tree[f"down_blocks_{i}"]["conv"]["kernel"].shape == (3, 3, ch(i), ch(i + 1))
        assert tree[f"up_blocks_{i}"]["conv"]["kernel"].shape == (3, 3, ch(n - i), ch(n - i - 1))
    assert f"down_blocks_{n}" not in tree and f"up_blocks_{n}" not in tree
    assert sorted(tree.get("bottleneck", {})) == [f"r{i}" for i in range(bottleneck)]
    for i in range(bottleneck):
        assert tree["bottleneck"][f"r{i}"]["conv1"]["kernel"].shape == (3, 3, ch(n), ch(n))
    assert tree["final"]["kernel"].shape == (7, 7, 4, C)


def test_generator_skips_without_occlusion_is_deformed_source():
    """With skips and no occlusion map, every blend of the generator keeps only the warped tensor."""
    module, variables, out = run_generator("n1-b0-skips-noocc")
    # Same ops on the same flow: equal to float32 rounding of fused vs unfused evaluation.
    np.testing.assert_allclose(out["prediction"], out["deformed"], rtol=0, atol=1e-6)

    def loss(params):
        return module.apply({**variables, "params": params}, *GEN_INPUTS)["prediction"].sum()

    grads = jit(jax.grad(loss))(variables["params"])
    for part in ("first", "down_blocks_0", "up_blocks_0", "final"):
        for path, g in leaves_with_paths(grads[part]):
            np.testing.assert_array_equal(g, 0.0, err_msg=f"{part}{path}")
    # ... while the flow predictor does learn (the gradient is not trivially zero everywhere).
    assert any(np.abs(g).max() > 0 for _, g in leaves_with_paths(grads["pixelwise_flow_predictor"]))


def test_generator_skips_with_occlusion_blends():
    _, _, out = run_generator("n2-b2-skips-occ")
    assert np.abs(np.asarray(out["prediction"]) - np.asarray(out["deformed"])).max() > 1e-3


# =================================================================== 7. Train mode of a whole generator


def test_generator_train_mode_moves_every_running_statistic():
    """Every BatchNorm moves in train mode, including those whose outputs the skips discard."""
    module, variables, _ = run_generator("n1-b0-skips-noocc")

    @jit
    def both_modes(v):  # one compilation for the two applies
        return [module.apply(v, *GEN_INPUTS, train=train, mutable=["batch_stats"])[1] for train in (True, False)]

    train_state, eval_state = both_modes(variables)
    before = leaves_with_paths(variables["batch_stats"])
    after_train = dict(leaves_with_paths(train_state["batch_stats"]))
    after_eval = dict(leaves_with_paths(eval_state["batch_stats"]))
    assert len(before) >= 10 and set(after_train) == {p for p, _ in before}
    for path, old in before:
        assert np.any(after_train[path] != old), f"train mode left {path} unchanged"
        np.testing.assert_array_equal(after_eval[path], old, err_msg=f"eval mode changed {path}")


# =================================================================== 6. AVD network


@functools.cache
def run_avd():
    module = AVDNetwork(num_regions=K, id_bottle_size=8, pose_bottle_size=8, revert_axis_swap=True)
    identity, pose = synthetic_params(6, batch=4), synthetic_params(7, batch=4)
    out, variables = build(module, identity, pose)
    return module, variables, out, identity, pose


def test_avd_shapes_and_layers():
    module, variables, out, _, _ = run_avd()
    assert out.shift.shape == (4, K, 2) and out.affine.shape == (4, K, 2, 2)
    affine = np.asarray(out.affine, np.float64)
    # covar = A A^T computed in float32 from the same affine; entries are O(1).
    np.testing.assert_allclose(out.covar, affine @ np.swapaxes(affine, -1, -2), rtol=1e-5, atol=1e-6)
    tree = variables["params"]
    assert tree["pose_encoder_0"]["kernel"].shape == (6 * K, 256)
    assert tree["id_encoder_9"]["kernel"].shape == (1024, 8)
    assert tree["decoder_0"]["kernel"].shape == (16, 1024)
    assert tree["decoder_9"]["kernel"].shape == (256, 6 * K)
    assert tree["decoder_1"]["scale"].shape == (1024,)  # 1-d BatchNorm between Linears
    assert "decoder_10" not in tree and "pose_encoder_10" not in tree


def test_avd_revert_axis_swap():
    module, variables, _, identity, pose = run_avd()
    on = jit(module.apply)
    off = jit(module.clone(revert_axis_swap=False).apply)
    relative = np.asarray(identity.affine) @ np.linalg.inv(np.asarray(pose.affine))
    negative = relative[..., 0, 0] < 0
    assert negative.any(), "test data must contain a swapped region"
    # Switching the sign does nothing where relative[0, 0] > 0 ...
    aligned = RegionParams(
        shift=identity.shift, affine=identity.affine * jnp.where(negative, -1.0, 1.0)[..., None, None]
    )
    # (x 1.0 and x sign 1.0 are exact; only evaluation order may differ: O(1) outputs, 1e-6.)
    np.testing.assert_allclose(
        on(variables, aligned, pose).affine, off(variables, aligned, pose).affine, rtol=0, atol=1e-6
    )
    # ... and flips the swapped regions otherwise: revert on sees `aligned` in both cases.
    np.testing.assert_allclose(
        on(variables, identity, pose).affine, on(variables, aligned, pose).affine, rtol=0, atol=1e-6
    )
    # (The random MLP shrinks its input's influence to ~5e-4 here; 1e-5 is 50x below that
    # and 10x above the exact-agreement tolerance.)
    assert (
        np.abs(
            np.asarray(off(variables, identity, pose).affine) - np.asarray(on(variables, identity, pose).affine)
        ).max()
        > 1e-5
    )


def test_avd_train_mode_updates_batch_stats():
    module, variables, _, identity, pose = run_avd()
    out, state = jit(lambda v: module.apply(v, identity, pose, train=True, mutable=["batch_stats"]))(variables)
    assert out.shift.shape == (4, K, 2)
    after = dict(leaves_with_paths(state["batch_stats"]))
    before = leaves_with_paths(variables["batch_stats"])
    assert len(before) == 3 * 3 * 2  # 3 MLPs x 3 BatchNorms x (mean, var)
    for path, old in before:
        assert np.any(after[path] != old), f"train mode left {path} unchanged"


# =================================================================== 8. The whole model

TINY_CONFIG = {
    "dataset_params": {"frame_shape": [32, 32, 3]},
    "model_params": {
        "num_regions": K,
        "num_channels": C,
        "estimate_affine": True,
        "bg_predictor_params": {"block_expansion": 4, "max_features": 16, "num_blocks": 1, "bg_type": "affine"},
        # Regression, not PCA: the 2x2 SVD is a large elementwise graph that would be compiled
        # again in every jitted entry point below (~1 s each); PCA is covered by the module tests.
        "region_predictor_params": {
            "temperature": 0.1,
            "block_expansion": 4,
            "max_features": 16,
            "scale_factor": 0.5,
            "num_blocks": 1,
            "pca_based": False,
        },
        "generator_params": {
            "block_expansion": 4,
            "max_features": 16,
            "num_down_blocks": 1,
            "num_bottleneck_blocks": 0,
            "skips": False,
            "pixelwise_flow_predictor_params": {
                "block_expansion": 4,
                "max_features": 16,
                "num_blocks": 1,
                "scale_factor": 0.5,
                "use_covar_heatmap": True,
                "estimate_occlusion_map": True,
            },
        },
        "avd_network_params": {"id_bottle_size": 8, "pose_bottle_size": 8},
    },
}


@pytest.fixture(scope="module")
def model():
    from mraa_jax import model as model_module
    from mraa_jax.config import config_from_dict

    config = config_from_dict(TINY_CONFIG)
    model = model_module.MRAA.random(config)
    # At initialisation the regression conv makes every affine the identity; perturb its
    # kernel so that affines differ between regions and frames (by ~0.2 around I).
    jacobian = model.variables["region_predictor"]["params"]["jacobian"]
    jacobian["kernel"] = np.random.RandomState(13).normal(0, 0.02, jacobian["kernel"].shape).astype(np.float32)
    return model


VIDEO = np.random.RandomState(11).uniform(0, 1, (5, 32, 32, C)).astype(np.float32)
SOURCE = np.random.RandomState(12).uniform(0, 1, (32, 32, C)).astype(np.float32)


@pytest.mark.slow
def test_model_single_steps(model):
    sources = np.broadcast_to(SOURCE, VIDEO.shape)
    driving = model.regions(VIDEO)
    assert (
        driving.shift.shape == (5, K, 2)
        and driving.affine.shape == (5, K, 2, 2)
        and driving.covar.shape == (5, K, 2, 2)
    )
    assert driving.heatmap.shape == (5, 16, 16, K)
    source = model.regions(sources)
    bg = model.background(sources, VIDEO)
    np.testing.assert_array_equal(bg, np.broadcast_to(np.eye(3), (5, 3, 3)))  # fc initialised to the identity
    out = model.generate(sources, source, driving)
    prediction = np.asarray(out["prediction"])
    assert prediction.shape == VIDEO.shape and np.all((prediction >= 0) & (prediction <= 1))
    assert out["optical_flow"].shape == (5, 16, 16, 2) and out["occlusion_map"].shape == (5, 16, 16, 1)
    avd = model.avd(source, driving)
    assert avd.shift.shape == (5, K, 2) and avd.affine.shape == (5, K, 2, 2) and avd.covar.shape == (5, K, 2, 2)

    # Standard animation (source encoded once, chunked) renders what generate renders.
    # Different batch sizes and graphs change float32 rounding only: outputs in [0, 1], 2e-5.
    video = model.animate(SOURCE, VIDEO, mode="standard", chunk_size=5)
    np.testing.assert_allclose(video, prediction, rtol=0, atol=2e-5)


@pytest.mark.parametrize("mode", ["standard", "relative", "avd"])
def test_model_animate_modes(model, mode):
    video = np.asarray(model.animate(SOURCE, VIDEO, mode=mode, chunk_size=5))
    assert video.shape == VIDEO.shape and np.all((video >= 0) & (video <= 1))
    if mode == "avd":
        # Chunks of 2 (last one padded by repeating frame 5) render the same frames.
        # Only the batch size of XLA's kernels differs: float32 rounding, outputs in [0, 1].
        chunked = model.animate(SOURCE, VIDEO, mode=mode, chunk_size=2)
        np.testing.assert_allclose(chunked, video, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.regions(SOURCE), r"images must be a \(B, H, W, C\) batch"),
        (lambda m: m.background(SOURCE, VIDEO), r"source must be a \(B, H, W, C\) batch"),
        (lambda m: m.generate(SOURCE, m.regions(VIDEO[:1]), m.regions(VIDEO[:1])), r"source must be"),
        (lambda m: m.animate(SOURCE[None], VIDEO), r"animate expects source_image \(H, W, C\)"),
        (lambda m: m.animate(SOURCE, VIDEO[0]), r"animate expects"),
        (lambda m: m.animate(SOURCE, VIDEO, mode="sideways"), r"animation mode must be one of"),
        # Checked beyond ndim: no frames, a wrong channel count, source and driving sizes that differ.
        (lambda m: m.animate(SOURCE, VIDEO[:0]), r"(?i)frame"),
        (lambda m: m.regions(VIDEO[..., :2]), r"(?i)channel"),
        (lambda m: m.background(VIDEO[:1], VIDEO[:1, :16, :16]), r"(?i)shape"),
    ],
    ids=[
        "regions-3d",
        "background-3d",
        "generate-3d",
        "animate-4d-source",
        "animate-3d-video",
        "animate-mode",
        "animate-empty-video",
        "regions-wrong-channels",
        "background-size-mismatch",
    ],
)
def test_model_bad_inputs_raise_value_error(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)


@pytest.mark.slow
def test_init_variables_equal_flax_init_on_real_inputs():
    """mraa_jax.model.init_variables initialises each network from shapes alone (flax's
    lazy_init, one program per network): the values must be those of `init` on real inputs,
    with the key init_variables gives each network. The generator is left out for time (17 s
    of compilation); the AVD network covers region params given as shapes, the predictors
    images."""
    from conftest import tiny_training_config

    from mraa_jax.model import NETWORKS, build_networks, init_variables

    networks = build_networks(tiny_training_config().model_params)
    key = jax.random.PRNGKey(3)
    names = ("region_predictor", "bg_predictor", "avd_network")
    got = init_variables(networks, key, (32, 32, C), names)
    keys = dict(zip(NETWORKS, jax.random.split(key, len(NETWORKS))))
    image = jnp.zeros((1, 32, 32, C))
    eye = jnp.broadcast_to(jnp.eye(2), (1, networks.region_predictor.num_regions, 2, 2))
    params = RegionParams(shift=jnp.zeros(eye.shape[:-1]), covar=eye, affine=eye)
    inputs = {"region_predictor": (image,), "bg_predictor": (image, image), "avd_network": (params, params)}
    assert set(got) == set(names)
    for name in names:
        want = dict(jax.jit(getattr(networks, name).init)(keys[name], *inputs[name]))
        mine = {collection: got[name][collection] for collection in want}
        assert jax.tree.structure(want) == jax.tree.structure(mine), name
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(mine)):
            np.testing.assert_array_equal(a, b, err_msg=name + jax.tree_util.keystr(path))
