"""Region predictor: heatmaps, centres and affine shapes of K regions (PCA of each heatmap, or regressed)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mraa_jax import geometry
from mraa_jax.modules.blocks import Conv, Hourglass
from mraa_jax.region_params import RegionParams, covar_from_affine
from mraa_jax.svd import svd_2x2


def heatmap_moments(heatmap: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Centre (B, K, 2) and covariance (B, K, 2, 2) of (B, h, w, K) heatmaps over their own grid."""
    grid = geometry.make_coordinate_grid(heatmap.shape[1], heatmap.shape[2], heatmap.dtype)
    shift = jnp.einsum("bhwk,hwc->bkc", heatmap, grid)
    diff = grid[None, :, :, None, :] - shift[:, None, None]  # (B, h, w, K, 2)
    covar = jnp.einsum("bhwk,bhwki,bhwkj->bkij", heatmap, diff, diff)
    return shift, covar


def pca_affine(covar: jax.Array) -> jax.Array:
    """U diag(sqrt(S)) of covar = U S V^T, with LAPACK's signs (see `svd_2x2`)."""
    u, s = svd_2x2(covar)
    return u * jnp.sqrt(s)[..., None, :]


class RegionPredictor(nn.Module):
    """Finds K regions in an image: (B, H, W, C) in [0, 1] -> RegionParams.

    Variants: `pca_based` (affine from the SVD of each heatmap's covariance, the
    published models), regression (`estimate_affine` without `pca_based`: a
    second conv regresses the affine, FOMM-like), or keypoints only.

    `dtype`: compute dtype of the hourglass (bfloat16 for speed); the output convs,
    the heatmap softmax and the region parameters are always float32.
    """

    block_expansion: int
    num_regions: int
    num_channels: int
    max_features: int
    num_blocks: int
    temperature: float
    estimate_affine: bool = False
    scale_factor: float = 1.0
    pca_based: bool = False
    pad: int = 3
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array, train: bool = False) -> RegionParams:
        x = geometry.antialias_downsample(image, self.scale_factor).astype(self.dtype)
        features = Hourglass(
            self.block_expansion, self.num_blocks, self.max_features, self.bn_axis_name, name="predictor"
        )(x, train)
        features = features.astype(jnp.float32)
        logits = Conv(self.num_regions, 7, self.pad, name="regions")(features)
        b, h, w, k = logits.shape
        heatmap = jax.nn.softmax((logits / self.temperature).reshape(b, h * w, k), axis=1).reshape(b, h, w, k)
        shift, covar = heatmap_moments(heatmap)

        if self.pca_based:
            return RegionParams(shift=shift, covar=covar, affine=pca_affine(covar), heatmap=heatmap)
        if self.estimate_affine:
            jacobian = Conv(
                4,
                7,
                self.pad,
                kernel_init=nn.initializers.zeros,
                bias_init=lambda *_: jnp.asarray(np.array([1.0, 0.0, 0.0, 1.0], np.float32)),
                name="jacobian",
            )(features)
            affine = jnp.einsum("bhwk,bhwc->bkc", heatmap, jacobian).reshape(b, k, 2, 2)
            return RegionParams(shift=shift, covar=covar_from_affine(affine), affine=affine, heatmap=heatmap)
        return RegionParams(shift=shift, heatmap=heatmap)
