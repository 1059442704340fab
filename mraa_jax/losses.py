"""Training losses of the paper and the original: perceptual pyramid, equivariance, AVD reconstruction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mraa_jax import geometry
from mraa_jax.geometry import inverse_2x2
from mraa_jax.region_params import RegionParams

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg19().features: conv layer indices and widths up to relu5_1, and
# the slices [0:2], [2:7], [7:12], [12:21], [21:30] that end at relu1_1 ... relu5_1.
VGG19_CONVS = (
    (0, 64),
    (2, 64),
    (5, 128),
    (7, 128),
    (10, 256),
    (12, 256),
    (14, 256),
    (16, 256),
    (19, 512),
    (21, 512),
    (23, 512),
    (25, 512),
    (28, 512),
)
VGG19_POOLS_BEFORE = (5, 10, 19, 28)  # a 2x2 max pool precedes these convs
VGG19_OUTPUT_AFTER = (0, 5, 10, 19, 28)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1


class VGG19Features(nn.Module):
    """VGG-19 activations relu1_1 ... relu5_1 of (B, H, W, 3) images in [0, 1].

    Parameters are named `features_<i>` after torchvision's `features.<i>`, so its
    weight file converts mechanically (see `mraa_jax.vgg_weights`). `dtype`: compute
    dtype of the convs (bfloat16 for speed); the activations are returned as float32.
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        from mraa_jax.modules.blocks import Conv

        x = (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)
        x = x.astype(self.dtype)
        outputs = []
        for index, width in VGG19_CONVS:
            if index in VGG19_POOLS_BEFORE:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.relu(Conv(width, 3, 1, name=f"features_{index}")(x))
            if index in VGG19_OUTPUT_AFTER:
                outputs.append(x.astype(jnp.float32))
        return outputs


def perceptual_loss(
    vgg_fn, prediction: jax.Array, target: jax.Array, scales: Sequence[float], weights: Sequence[float]
) -> jax.Array:
    """sum over scales and layers of w_layer * mean|f(pred) - f(target)|; the target side has no gradient.

    vgg_fn: images -> list of 5 feature maps. Each scale downsamples both images
    with the anti-aliasing operator of the model.
    """
    total = jnp.zeros((), jnp.float32)
    for scale in scales:
        pred = geometry.antialias_downsample_separable(prediction, scale)
        real = jax.lax.stop_gradient(geometry.antialias_downsample_separable(target, scale))
        for weight, f_pred, f_real in zip(weights, vgg_fn(pred), jax.lax.stop_gradient(vgg_fn(real))):
            if weight:
                total = total + weight * jnp.mean(jnp.abs(f_pred - f_real))
    return total


def pyramid_l1(prediction: jax.Array, target: jax.Array, scales: Sequence[float]) -> jax.Array:
    """sum over scales of mean|pred - target|, both downsampled as for the perceptual loss.

    The stand-in for the perceptual loss without VGG weights: the coarse scales give
    gradients that reach across large motions, which the full-resolution L1 lacks.
    """
    total = jnp.zeros((), jnp.float32)
    for scale in scales:
        pred = geometry.antialias_downsample_separable(prediction, scale)
        real = geometry.antialias_downsample_separable(jax.lax.stop_gradient(target), scale)
        total = total + jnp.mean(jnp.abs(pred - real))
    return total


# -- the equivariance transform ----------------------------------------------------


class EquivarianceTransform:
    """Random affine + thin-plate-like warp per batch element (the original's `Transform`).

    theta (B, 2, 3) = I + N(0, sigma_affine); control_params (B, P*P) ~ N(0, sigma_tps)
    over a P x P coordinate grid of control points. Quirk kept from the original: the
    radial term uses the L1 distance and one scalar is added to both x and y.
    """

    def __init__(
        self, theta: jax.Array, control_params: jax.Array | None = None, control_points: jax.Array | None = None
    ):
        self.theta = theta
        self.control_params = control_params
        self.control_points = control_points

    @classmethod
    def random(
        cls,
        rng: jax.Array,
        batch: int,
        sigma_affine: float,
        sigma_tps: float | None = None,
        points_tps: int | None = None,
    ):
        key_affine, key_tps = jax.random.split(rng)
        theta = jnp.eye(2, 3)[None] + sigma_affine * jax.random.normal(key_affine, (batch, 2, 3))
        if sigma_tps is None or points_tps is None:
            return cls(theta)
        points = geometry.make_coordinate_grid(points_tps, points_tps).reshape(-1, 2)
        params = sigma_tps * jax.random.normal(key_tps, (batch, points_tps * points_tps))
        return cls(theta, params, points)

    def warp_coordinates(self, coords: jax.Array) -> jax.Array:
        """Warp (B, N, 2) points."""
        out = jnp.einsum("bij,bnj->bni", self.theta[:, :, :2], coords) + self.theta[:, None, :, 2]
        if self.control_params is not None:
            distances = jnp.abs(coords[:, :, None, :] - self.control_points[None, None]).sum(-1)  # (B, N, P*P)
            radial = distances**2 * jnp.log(distances + 1e-6)
            out = out + jnp.einsum("bnc,bc->bn", radial, self.control_params)[..., None]
        return out

    def jacobian(self, coords: jax.Array) -> jax.Array:
        """(B, N, 2, 2) Jacobian of the warp at each point; rows are the output x and y."""

        def warp_one(batch_index, point):
            single = EquivarianceTransform(
                self.theta[batch_index][None],
                None if self.control_params is None else self.control_params[batch_index][None],
                self.control_points,
            )
            return single.warp_coordinates(point[None, None])[0, 0]

        per_point = jax.jacfwd(warp_one, argnums=1)
        batch_index = jnp.arange(coords.shape[0])
        return jax.vmap(jax.vmap(per_point, in_axes=(None, 0)), in_axes=(0, 0))(batch_index, coords)

    def transform_frame(self, frame: jax.Array) -> jax.Array:
        """The frame (B, H, W, C) sampled at the warped identity grid, reflection padding."""
        batch, height, width, _ = frame.shape
        grid = geometry.make_coordinate_grid(height, width, frame.dtype).reshape(1, -1, 2)
        warped = self.warp_coordinates(jnp.broadcast_to(grid, (batch,) + grid.shape[1:])).reshape(
            batch, height, width, 2
        )
        return geometry.grid_sample(frame, warped, padding_mode="reflection")


jax.tree_util.register_pytree_node(
    EquivarianceTransform,
    lambda t: ((t.theta, t.control_params, t.control_points), None),
    lambda _, children: EquivarianceTransform(*children),
)


def equivariance_losses(
    transform: EquivarianceTransform, driving: RegionParams, transformed: RegionParams, revert_axis_swap: bool
) -> tuple[jax.Array, jax.Array]:
    """(shift loss, affine loss), unweighted.

    shift: mean|shift_drv - warp(shift_transformed)|. affine: M = A_drv^-1 (J A_transformed)
    with J the warp's Jacobian at shift_transformed; with revert_axis_swap M is
    multiplied by sign(M[0, 0]); loss = mean|I - M|.
    """
    shift_loss = jnp.mean(jnp.abs(driving.shift - transform.warp_coordinates(transformed.shift)))
    if driving.affine is None or transformed.affine is None:
        return shift_loss, jnp.zeros((), shift_loss.dtype)
    moved = transform.jacobian(transformed.shift) @ transformed.affine
    value = inverse_2x2(driving.affine) @ moved
    if revert_axis_swap:
        value = value * jnp.sign(value[..., 0:1, 0:1])
    affine_loss = jnp.mean(jnp.abs(jnp.eye(2, dtype=value.dtype) - value))
    return shift_loss, affine_loss


def avd_loss(prediction: RegionParams, target: RegionParams, lambda_shift: float, lambda_affine: float) -> jax.Array:
    """lambda_shift mean|d shift| + lambda_affine mean|d affine|: the AVD stage's loss."""
    shift = jnp.mean(jnp.abs(prediction.shift - target.shift))
    affine = jnp.mean(jnp.abs(prediction.affine - target.affine))
    return lambda_shift * shift + lambda_affine * affine
