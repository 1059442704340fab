"""The reconstruction stage's forward and losses (the original's ReconstructionModel)."""

from __future__ import annotations

from collections.abc import Callable

import jax

from mraa_jax import losses
from mraa_jax.config import SECTION_DEFAULTS
from mraa_jax.model import Networks

RECONSTRUCTION_NETWORKS = ("region_predictor", "bg_predictor", "generator")
# The weights of terms that a partial loss_weights leaves out: off (the config schema's).
WEIGHTS_OFF = SECTION_DEFAULTS["train_params"]["loss_weights"].given


def reconstruction_losses(
    networks: Networks,
    params: dict,
    batch_stats: dict,
    source: jax.Array,
    driving: jax.Array,
    transform: losses.EquivarianceTransform | None,
    loss_weights: dict,
    scales=(1,),
    vgg_fn: Callable | None = None,
) -> tuple[jax.Array, tuple[dict, dict, dict]]:
    """Total loss and (named losses, updated batch_stats, generated) of one train-mode forward.

    params/batch_stats: {network: tree} for region_predictor, bg_predictor, generator.
    The region predictor runs on source, driving, then the transformed frame: its
    BatchNorm statistics move three times, as in the original. Loss terms with
    weight 0, or left out of `loss_weights`, are skipped; `l1` (mean |prediction - driving| summed over the pyramid
    of `scales`) is added when loss_weights has a non-zero 'l1' (the perceptual
    loss's stand-in without VGG).
    """

    def run(network, *args, stats):
        variables = {"params": params[network], "batch_stats": stats}
        out, state = getattr(networks, network).apply(variables, *args, train=True, mutable=["batch_stats"])
        return out, state.get("batch_stats", {})

    rp_stats = batch_stats["region_predictor"]
    source_params, rp_stats = run("region_predictor", source, stats=rp_stats)
    driving_params, rp_stats = run("region_predictor", driving, stats=rp_stats)
    bg, bg_stats = run("bg_predictor", source, driving, stats=batch_stats["bg_predictor"])
    generated, gen_stats = run("generator", source, driving_params, source_params, bg, stats=batch_stats["generator"])
    prediction = generated["prediction"]

    named = {}
    weights = {**WEIGHTS_OFF, **loss_weights}
    if any(weights["perceptual"]):
        named["perceptual"] = losses.perceptual_loss(vgg_fn, prediction, driving, scales, list(weights["perceptual"]))
    if weights["l1"]:
        named["l1"] = weights["l1"] * losses.pyramid_l1(prediction, driving, scales)
    generated = dict(generated, source_params=source_params, driving_params=driving_params, bg_params=bg)
    if transform is not None and (weights["equivariance_shift"] or weights["equivariance_affine"]):
        transformed_frame = transform.transform_frame(driving)
        transformed_params, rp_stats = run("region_predictor", transformed_frame, stats=rp_stats)
        shift_loss, affine_loss = losses.equivariance_losses(
            transform, driving_params, transformed_params, networks.generator.revert_axis_swap
        )
        if weights["equivariance_shift"]:
            named["equivariance_shift"] = weights["equivariance_shift"] * shift_loss
        if weights["equivariance_affine"]:
            named["equivariance_affine"] = weights["equivariance_affine"] * affine_loss
        generated.update(transformed_frame=transformed_frame, transformed_params=transformed_params)
    total = sum(named.values())
    new_stats = {"region_predictor": rp_stats, "bg_predictor": bg_stats, "generator": gen_stats}
    return total, (named, new_stats, generated)
