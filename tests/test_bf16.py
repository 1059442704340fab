"""bfloat16 compute (`model_params.compute_dtype`): close to float32, really applied, trainable.

On CPU (bfloat16 works there, slowly) with the converted fixture model and the fixture's
real frames. float32 itself is unchanged by the option: tests/test_parity.py and
tests/test_training_parity.py hold it to the original's outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import nhwc
from test_training_parity import LOSS_WEIGHTS, fixture_transform

from mraa_jax.config import load_config, validate_config
from mraa_jax.model import build_networks
from mraa_jax.training.reconstruction import RECONSTRUCTION_NETWORKS, reconstruction_losses

# Max |bf16 - f32| of the relative-mode animation of the fixture clip (6 frames, 64x64, images
# in [0, 1]): one step of bfloat16 at 1.0 (2^-7), what rounding one value of the image's range to
# bfloat16 may cost. Measured on CPU: 5.3e-3 on the fixture's frames, 3.7e-3 on the original's
# sample frames (benchmarks/bf16_difference.py).
PREDICTION_BOUND = 2.0**-7
# Region centres (coordinates in [-1, 1]) of the source frame: measured 1.8e-4 on CPU.
SHIFT_BOUND = 4e-4
# Training losses relative to float32. The affine equivariance loss is the most sensitive: the
# region predictor's features are bfloat16, and its softmax at temperature 0.1 multiplies their
# rounding tenfold before the heatmap moments and their SVD. Measured on CPU: 3.8% (one
# region's term 20%; the total 2.7%) on the fixture's frames, 1.0% (total 0.6%) on the original's
# sample frames; the other losses at most 0.2%.
LOSS_RTOL = {"equivariance_affine": 0.06, "total": 0.04}
OTHER_LOSS_RTOL = 0.02


def test_config_compute_dtype(fixture_dir):
    config = load_config(fixture_dir / "config.yaml")
    assert config.model_params.compute_dtype == "float32"  # the default, filled in
    assert build_networks(config.model_params).compute_dtype == jnp.float32
    config.model_params.compute_dtype = "bfloat16"
    validate_config(config)
    nets = build_networks(config.model_params)
    assert nets.compute_dtype == jnp.bfloat16 and nets.generator.dtype == jnp.bfloat16
    config.model_params.compute_dtype = "float16"
    with pytest.raises(
        ValueError, match=r"model_params\.compute_dtype: expected one of float32, bfloat16, got 'float16'"
    ):
        validate_config(config)
    with pytest.raises(ValueError, match="compute_dtype"):
        build_networks(config.model_params)


@pytest.mark.slow
def test_bf16_animation_close_to_float32(fixture_model, fixture_inputs):
    source, clip = nhwc(fixture_inputs["source"])[0], nhwc(fixture_inputs["clip"])
    bf16 = fixture_model.with_compute_dtype("bfloat16")
    f32_video = np.asarray(fixture_model.animate(source, clip, mode="relative", chunk_size=4))
    bf16_video = np.asarray(bf16.animate(source, clip, mode="relative", chunk_size=4))
    assert bf16_video.dtype == np.float32
    diff = np.abs(bf16_video - f32_video).max()
    assert diff < PREDICTION_BOUND, diff
    assert diff > 1e-4, f"bfloat16 gave float32's result (max difference {diff}): the option is not applied"
    # The source's region centres (the program animate compiled for it): float32 in both.
    shift_bf16, shift_f32 = bf16.regions(source[None]).shift, fixture_model.regions(source[None]).shift
    assert shift_bf16.dtype == jnp.float32
    shift_diff = np.abs(np.asarray(shift_bf16) - np.asarray(shift_f32)).max()
    assert shift_diff < SHIFT_BOUND, shift_diff


@pytest.mark.slow
def test_bf16_training_losses_and_gradients(fixture_model, fixture_inputs, fixture_train):
    """One train-mode forward and backward in bfloat16 against the original's float32 losses
    (which float32 matches within 1e-4, see test_training_parity)."""
    model = fixture_model.with_compute_dtype("bfloat16")
    params = {n: model.variables[n]["params"] for n in RECONSTRUCTION_NETWORKS}
    stats = {n: model.variables[n]["batch_stats"] for n in RECONSTRUCTION_NETWORKS}
    source, driving = nhwc(fixture_inputs["source"]), nhwc(fixture_inputs["driving"])
    transform = fixture_transform(fixture_train)

    def loss(p):
        return reconstruction_losses(model.networks, p, stats, source, driving, transform, LOSS_WEIGHTS)

    (total, (named, new_stats, _)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    for name, value in dict(named, total=total).items():
        assert value.dtype == jnp.float32, name
        rtol = LOSS_RTOL.get(name, OTHER_LOSS_RTOL)
        np.testing.assert_allclose(float(value), float(fixture_train[f"loss.{name}"]), rtol=rtol, err_msg=name)
    leaves = jax.tree_util.tree_leaves((grads, new_stats))
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)  # parameters and statistics stay float32
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
