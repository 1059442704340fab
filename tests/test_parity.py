"""The converted fixture checkpoint computes what the original computed (tests/fixtures/mraa_tiny).

Every array of outputs.npz that is a model output is compared with max absolute
difference <= 1e-4; the train-mode forward of train_mode.npz likewise.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import nhwc

from mraa_jax.convert import flat_leaves, flax_to_torch

ATOL = 1e-4


def assert_close(name, ours, theirs, atol=ATOL):
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} != {theirs.shape}"
    diff = float(np.max(np.abs(ours - theirs)))
    assert diff <= atol, f"{name}: max abs difference {diff:.3g} > {atol}"


@pytest.fixture(scope="module")
def frames(fixture_inputs):
    return {k: nhwc(fixture_inputs[k]) for k in ("source", "driving", "clip")}


@pytest.fixture(scope="module")
def eval_params(fixture_model, frames):
    return {name: fixture_model.regions(frames[name]) for name in ("source", "driving")}


@pytest.mark.parametrize("image", ["source", "driving"])
def test_region_predictor(eval_params, fixture_outputs, image):
    params = eval_params[image]
    for field in ("shift", "covar", "affine"):
        assert_close(f"rp.{image}.{field}", getattr(params, field), fixture_outputs[f"rp.{image}.{field}"])
    assert_close(
        f"rp.{image}.heatmap", np.moveaxis(np.asarray(params.heatmap), -1, 1), fixture_outputs[f"rp.{image}.heatmap"]
    )


def test_background(fixture_model, frames, fixture_outputs):
    assert_close(
        "bg.params", fixture_model.background(frames["source"], frames["driving"]), fixture_outputs["bg.params"]
    )


@pytest.mark.parametrize("prefix", ["gen", "gen_nobg"])
def test_generator(fixture_model, frames, eval_params, fixture_outputs, prefix):
    bg = fixture_model.background(frames["source"], frames["driving"]) if prefix == "gen" else None
    out = fixture_model.generate(frames["source"], eval_params["source"], eval_params["driving"], bg)
    for key in ("prediction", "deformed", "occlusion_map"):
        assert_close(f"{prefix}.{key}", out[key], nhwc(fixture_outputs[f"{prefix}.{key}"]))
    if prefix == "gen":
        assert_close("flow.optical_flow", out["optical_flow"], fixture_outputs["flow.optical_flow"])


@pytest.mark.slow
def test_flow_intermediates(fixture_model, frames, eval_params, fixture_outputs):
    """Sparse motions and deformed sources inside the flow predictor (for debugging a mismatch)."""
    nets, variables = fixture_model.networks, fixture_model.variables
    bg = fixture_model.background(frames["source"], frames["driving"])
    _, state = nets.generator.apply(
        variables["generator"],
        frames["source"],
        eval_params["driving"],
        eval_params["source"],
        bg,
        mutable=["intermediates"],
    )
    inter = state["intermediates"]["pixelwise_flow_predictor"]
    assert_close("flow.sparse_motion", inter["sparse_motion"][0], fixture_outputs["flow.sparse_motion"])
    assert_close("flow.deformed_source", inter["deformed_source"][0], nhwc(fixture_outputs["flow.deformed_source"]))


def test_avd(fixture_model, eval_params, fixture_outputs):
    out = fixture_model.avd(eval_params["source"], eval_params["driving"])
    for field in ("shift", "affine", "covar"):
        assert_close(f"avd.{field}", getattr(out, field), fixture_outputs[f"avd.{field}"])


@pytest.mark.parametrize("mode", ["standard", "relative", "avd"])
def test_animation(fixture_model, frames, fixture_outputs, mode):
    video = fixture_model.animate(frames["source"][0], frames["clip"], mode=mode, chunk_size=4)
    assert_close(f"anim.{mode}.prediction", video, nhwc(fixture_outputs[f"anim.{mode}.prediction"]))


@pytest.mark.parametrize("mode", ["standard", "relative", "avd"])
def test_animation_params(fixture_model, frames, fixture_outputs, mode):
    from mraa_jax import animation

    source = fixture_model.regions(frames["source"][:1])
    initial = fixture_model.regions(frames["clip"][:1])
    driving = fixture_model.regions(frames["clip"])
    scale = animation.movement_scale(source.shift[0], initial.shift[0])
    if mode == "relative":
        np.testing.assert_allclose(scale, fixture_outputs["anim.relative.movement_scale"], rtol=1e-5)
    params = animation.animation_params(mode, source, driving, initial, scale, fixture_model.avd)
    for field in ("shift", "affine", "covar"):
        assert_close(f"anim.{mode}.{field}", getattr(params, field), fixture_outputs[f"anim.{mode}.{field}"])


# -- train mode ------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_forward(fixture_model, frames, fixture_train):
    """One train-mode forward as the original's ReconstructionModel does it.

    The region predictor runs on source, driving and the transformed frame (its
    BatchNorm statistics move three times), the background predictor and the
    generator once. The transformed frame is the fixture's.
    """
    nets = fixture_model.networks  # jitted: one program compiles faster than the op-by-op run
    forward = jax.jit(lambda variables, frames, transformed: _train_forward(nets, variables, frames, transformed))
    return forward(fixture_model.variables, frames, nhwc(fixture_train["transformed_frame"]))


def _train_forward(nets, variables, frames, transformed):
    rp_vars = variables["region_predictor"]
    params = {}
    for name, image in (
        ("source", frames["source"]),
        ("driving", frames["driving"]),
        ("transformed", transformed),
    ):
        params[name], state = nets.region_predictor.apply(rp_vars, image, train=True, mutable=["batch_stats"])
        rp_vars = {"params": rp_vars["params"], **state}
    bg, bg_state = nets.bg_predictor.apply(
        variables["bg_predictor"], frames["source"], frames["driving"], train=True, mutable=["batch_stats"]
    )
    gen, gen_state = _train_generator(nets, variables, frames["source"], params["source"], params["driving"], bg)
    stats = {
        "region_predictor": rp_vars["batch_stats"],
        "bg_predictor": bg_state["batch_stats"],
        "generator": gen_state["batch_stats"],
    }
    return params, bg, gen, stats


def _train_generator(nets, variables, source, source_params, driving_params, bg):
    """(outputs, new state) of the generator in train mode, as the original's training calls it."""
    return nets.generator.apply(
        variables["generator"], source, driving_params, source_params, bg, train=True, mutable=["batch_stats"]
    )


def test_train_mode_outputs(train_forward, frames, fixture_train):
    """Every region parameter and the background within 1e-4; the generator's outputs too,
    or within CONDITIONED_ATOL where a region is near-isotropic (see below)."""
    params, bg, gen, _ = train_forward
    conditioned = has_near_isotropic_region(fixture_train, "source", "driving")
    for name, p in params.items():
        for field in ("shift", "covar", "affine"):
            assert_close(f"train.{name}.{field}", getattr(p, field), fixture_train[f"train.{name}.{field}"])
    assert_close("train.bg_params", bg, fixture_train["train.bg_params"])
    for key in ("prediction", "deformed", "occlusion_map"):
        assert_close(
            f"train.{key}", gen[key], nhwc(fixture_train[f"train.{key}"]), CONDITIONED_ATOL if conditioned else ATOL
        )
    l1 = np.mean(np.abs(np.asarray(gen["prediction"]) - frames["driving"]))
    assert_close("loss.l1", l1, fixture_train["loss.l1"])


# The PCA's SVD of a near-isotropic covariance (relative eigen-gap below NEAR_ISOTROPIC_GAP)
# turns float32 rounding of the covariance (~1e-6, the original's as much as ours) into a much
# larger change of its eigenvectors, and so of the region's affine and of the flow built from
# it. On the fixture's frames one driving region has a gap of 0.016: run in float64, the
# original's own float32 train-mode prediction is 4.9e-4 off (deformed 9.6e-4), ours 3.9e-4
# (7.7e-4), in opposite directions. Outputs downstream of such a region get CONDITIONED_ATOL.
NEAR_ISOTROPIC_GAP = 0.05
CONDITIONED_ATOL = 2e-3


def relative_eigen_gap(covar) -> np.ndarray:
    """(λ_max - λ_min) / λ_max of each 2x2 covariance, in float64."""
    eigenvalues = np.linalg.eigvalsh(np.asarray(covar, np.float64))
    return (eigenvalues[..., 1] - eigenvalues[..., 0]) / eigenvalues[..., 1]


def has_near_isotropic_region(fixture_train, *images: str) -> bool:
    """Whether any train-mode region of these images ("source", "driving") is near-isotropic."""
    return any(np.any(relative_eigen_gap(fixture_train[f"train.{n}.covar"]) < NEAR_ISOTROPIC_GAP) for n in images)


def test_train_mode_generator_apart_from_near_isotropic_regions(fixture_model, train_forward, frames, fixture_train):
    """The train-mode difference beyond 1e-4 comes from the near-isotropic regions alone: with
    only their affines taken from the original (every other input ours), the generator's
    outputs are within 1e-4 of the original's. (Without such regions, as on the original's
    sample frames, this is the end-to-end comparison at 1e-4.)"""
    params, bg, _, _ = train_forward
    near = {n: relative_eigen_gap(fixture_train[f"train.{n}.covar"]) < NEAR_ISOTROPIC_GAP for n in params}
    mixed = {
        n: params[n].replace(
            affine=np.where(near[n][..., None, None], fixture_train[f"train.{n}.affine"], params[n].affine)
        )
        for n in ("source", "driving")
    }
    gen, _ = _train_generator(
        fixture_model.networks, fixture_model.variables, frames["source"], mixed["source"], mixed["driving"], bg
    )
    for key in ("prediction", "deformed", "occlusion_map"):
        theirs = nhwc(fixture_train[f"train.{key}"])
        assert_close(f"train.{key}, near-isotropic affines the original's", gen[key], theirs)


def test_train_mode_running_statistics(train_forward, fixture_train):
    """BatchNorm running statistics after the forward (momentum 0.1, unbiased variance) within 1e-5."""
    *_, stats = train_forward
    checked = 0
    for network, tree in stats.items():
        for (collection, path), value in flat_leaves({"batch_stats": tree}).items():
            key = f"bn_after.{network}.{flax_to_torch(collection, path)}"
            assert_close(key, value, fixture_train[key], atol=1e-5)
            checked += 1
    expected = sum(1 for k in fixture_train if k.startswith("bn_after.") and not k.endswith("num_batches_tracked"))
    assert checked == expected
