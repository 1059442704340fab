"""The one type that carries region parameters between modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RegionParams:
    """Regions of a batch of images.

    shift: (B, K, 2) region centres, (x, y) in [-1, 1].
    covar: (B, K, 2, 2) region covariances, or None (keypoint-only variant).
    affine: (B, K, 2, 2) region shapes (PCA: U diag(sqrt S)), or None.
    heatmap: (B, h, w, K) region heatmaps (softmax over space), or None where
      the params were not read off images (AVD output, animation params).
    """

    shift: jax.Array
    covar: jax.Array | None = None
    affine: jax.Array | None = None
    heatmap: jax.Array | None = None

    def without_heatmap(self) -> RegionParams:
        """The same params without the heatmap (what the generator and AVD take)."""
        return self.replace(heatmap=None)


def covar_from_affine(affine: jax.Array) -> jax.Array:
    """A A^T for (..., 2, 2) affines: the covariance an affine region shape implies."""
    return jnp.einsum("...ij,...kj->...ik", affine, affine)
