"""The AVD stage's data-parallel step: the AVD network learns to re-shape a driving pose.

The region predictor is frozen and run in eval mode (the original leaves it in
train mode, so its BatchNorm drifts; we do not reproduce that quirk). Driving
params are randomly rescaled per batch element by diag(U(1-s, 1+s), U(1-s, 1+s))
and the network reconstructs the unscaled ones from (source identity, scaled pose).
"""

from __future__ import annotations

import functools

import jax
import optax

from mraa_jax.losses import avd_loss
from mraa_jax.model import Networks
from mraa_jax.region_params import RegionParams
from mraa_jax.training.steps import AXIS, TrainState, data_parallel, update_if_finite


def rescale(params: RegionParams, scale: jax.Array) -> RegionParams:
    """Multiply shifts and affines by diag(scale): scale (B, 2)."""
    return RegionParams(shift=params.shift * scale[:, None, :], affine=params.affine * scale[:, None, :, None])


def avd_step(
    state: TrainState,
    region_predictor_variables: dict,
    source: jax.Array,
    driving: jax.Array,
    *,
    networks: Networks,
    optimizer: optax.GradientTransformation,
    random_scale: float,
    lambda_shift: float,
    lambda_affine: float,
) -> tuple[TrainState, dict]:
    """One optimiser step of the AVD network on this device's part of the batch; call under `shard_map`."""
    rp = lambda images: networks.region_predictor.apply(region_predictor_variables, images).without_heatmap()  # noqa: E731
    identity, pose = rp(source), rp(driving)
    local_batch = source.shape[0]
    rng, key = jax.random.split(state.rng)
    # Drawn for the global batch and sliced, so any device count computes the same step.
    scales = jax.random.uniform(
        key, (local_batch * jax.lax.psum(1, AXIS), 2), minval=1 - random_scale, maxval=1 + random_scale
    )
    scales = jax.lax.dynamic_slice_in_dim(scales, jax.lax.axis_index(AXIS) * local_batch, local_batch)
    scaled_pose = rescale(pose, scales)

    def loss_fn(params):
        variables = {"params": params["avd_network"], "batch_stats": state.batch_stats["avd_network"]}
        prediction, new_state = networks.avd_network.apply(
            variables, identity, scaled_pose, train=True, mutable=["batch_stats"]
        )
        return avd_loss(prediction, pose, lambda_shift, lambda_affine), new_state["batch_stats"]

    # Per-device gradients (see reconstruction_step), averaged explicitly below.
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        jax.lax.pcast(state.params, AXIS, to="varying")
    )
    grads = jax.lax.pmean(grads, AXIS)
    batch_stats = jax.lax.pmean({"avd_network": batch_stats}, AXIS)
    metrics = {"avd": jax.lax.pmean(loss, AXIS)}
    metrics["total"] = metrics["avd"]
    state, metrics["skipped"] = update_if_finite(state, optimizer, grads, batch_stats, metrics["total"], rng)
    return state, metrics


def build_avd_step(networks: Networks, optimizer, avd_params: dict, mesh):
    """The jitted data-parallel AVD step: (state, region_predictor_variables, source, driving) -> (state, metrics)."""
    step = functools.partial(
        avd_step,
        networks=networks,
        optimizer=optimizer,
        random_scale=avd_params["random_scale"],
        lambda_shift=avd_params["lambda_shift"],
        lambda_affine=avd_params["lambda_affine"],
    )
    return data_parallel(step, mesh, num_replicated_args=2)
