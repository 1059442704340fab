"""Pixelwise flow predictor: dense motion from region motions and the background's."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mraa_jax import geometry
from mraa_jax.geometry import inverse_2x2
from mraa_jax.modules.blocks import Conv, Hourglass
from mraa_jax.region_params import RegionParams


def heatmap_representation(
    driving: RegionParams, source: RegionParams, height: int, width: int, use_covar: bool, region_var: float
) -> jax.Array:
    """G_driving - G_source per region, background zeros first: (B, h, w, K+1)."""
    gaussian_driving = geometry.region_gaussians(
        driving.shift, driving.covar if use_covar else region_var, height, width
    )
    gaussian_source = geometry.region_gaussians(source.shift, source.covar if use_covar else region_var, height, width)
    heatmap = gaussian_driving - gaussian_source
    zeros = jnp.zeros(heatmap.shape[:3] + (1,), heatmap.dtype)
    return jnp.concatenate([zeros, heatmap], axis=-1)


def region_motion_affines(driving: RegionParams, source: RegionParams, revert_axis_swap: bool) -> jax.Array:
    """A_src A_drv^-1 per region (B, K, 2, 2); with revert_axis_swap times sign of its [0, 0]."""
    affine = source.affine @ inverse_2x2(driving.affine)
    if revert_axis_swap:
        affine = affine * jnp.sign(affine[..., 0:1, 0:1])
    return affine


def sparse_motions(
    driving: RegionParams,
    source: RegionParams,
    bg_params: jax.Array | None,
    height: int,
    width: int,
    revert_axis_swap: bool,
) -> jax.Array:
    """Sampling grids driving -> source of the background and every region: (B, K+1, h, w, 2)."""
    grid = geometry.make_coordinate_grid(height, width, driving.shift.dtype)
    batch = driving.shift.shape[0]
    coords = grid[None, None] - driving.shift[:, :, None, None, :]  # (B, K, h, w, 2)
    if driving.affine is not None:
        affine = region_motion_affines(driving, source, revert_axis_swap)
        coords = jnp.einsum("bkij,bkhwj->bkhwi", affine, coords)
    region_grids = coords + source.shift[:, :, None, None, :]
    bg_grid = jnp.broadcast_to(grid, (batch, height, width, 2))
    if bg_params is not None:
        bg_grid = geometry.apply_homogeneous(bg_params, bg_grid)
    return jnp.concatenate([bg_grid[:, None], region_grids], axis=1)


def deform_sources(image: jax.Array, motions: jax.Array) -> jax.Array:
    """`image` (B, h, w, C) sampled at each of the K+1 motions: (B, K+1, h, w, C)."""
    batch, n_motions = motions.shape[:2]
    repeated = jnp.repeat(image[:, None], n_motions, axis=1).reshape((batch * n_motions,) + image.shape[1:])
    deformed = geometry.grid_sample(repeated, motions.reshape((batch * n_motions,) + motions.shape[2:]))
    return deformed.reshape((batch, n_motions) + deformed.shape[1:])


class PixelwiseFlowPredictor(nn.Module):
    """Blends K+1 sparse motions into a dense flow, and predicts the occlusion map.

    Returns a dict: `optical_flow` (B, h, w, 2), a sampling grid into the source at
    the downsampled resolution (h, w), and `occlusion_map` (B, h, w, 1) when
    `estimate_occlusion_map`.

    `dtype`: compute dtype of the hourglass; the heatmaps, sparse motions, deformed
    sources, the mask and occlusion convs, their softmax/sigmoid and the flow are float32.
    """

    block_expansion: int
    num_blocks: int
    max_features: int
    num_regions: int
    num_channels: int
    estimate_occlusion_map: bool = False
    scale_factor: float = 1.0
    region_var: float = 0.01
    use_covar_heatmap: bool = False
    use_deformed_source: bool = True
    revert_axis_swap: bool = False
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        source_image: jax.Array,
        driving: RegionParams,
        source: RegionParams,
        bg_params: jax.Array | None = None,
        train: bool = False,
    ) -> dict:
        image = geometry.antialias_downsample(source_image, self.scale_factor)
        batch, height, width, _ = image.shape
        heatmap = heatmap_representation(driving, source, height, width, self.use_covar_heatmap, self.region_var)
        motions = sparse_motions(driving, source, bg_params, height, width, self.revert_axis_swap)
        self.sow("intermediates", "sparse_motion", motions)
        if self.use_deformed_source:
            deformed = deform_sources(image, motions)  # (B, K+1, h, w, C)
            self.sow("intermediates", "deformed_source", deformed)
            # Per motion [heatmap_k, deformed_k]: the channel order the original's first conv expects.
            per_motion = jnp.concatenate([jnp.moveaxis(heatmap, -1, 1)[..., None], deformed], axis=-1)
            inputs = jnp.moveaxis(per_motion, 1, 3).reshape(batch, height, width, -1)
        else:
            inputs = heatmap
        features = Hourglass(
            self.block_expansion, self.num_blocks, self.max_features, self.bn_axis_name, name="hourglass"
        )(inputs.astype(self.dtype), train).astype(jnp.float32)
        mask = jax.nn.softmax(Conv(self.num_regions + 1, 7, 3, name="mask")(features), axis=-1)
        flow = jnp.einsum("bhwk,bkhwc->bhwc", mask, motions)
        out = {"optical_flow": flow}
        if self.estimate_occlusion_map:
            out["occlusion_map"] = jax.nn.sigmoid(Conv(1, 7, 3, name="occlusion")(features))
        return out
