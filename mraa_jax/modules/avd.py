"""Animation via disentanglement (AVD network): pose of one object, shape of another."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mraa_jax.geometry import inverse_2x2
from mraa_jax.modules.blocks import BatchNorm, Linear
from mraa_jax.region_params import RegionParams, covar_from_affine


def params_to_embedding(params: RegionParams) -> jax.Array:
    """(B, 6K): per region [shift_x, shift_y, a00, a01, a10, a11]."""
    batch, k = params.shift.shape[:2]
    return jnp.concatenate([params.shift, params.affine.reshape(batch, k, 4)], axis=-1).reshape(batch, -1)


def embedding_to_params(embedding: jax.Array, num_regions: int) -> RegionParams:
    """Inverse of `params_to_embedding`; covar = A A^T."""
    per_region = embedding.reshape(embedding.shape[0], num_regions, 6)
    affine = per_region[..., 2:].reshape(embedding.shape[0], num_regions, 2, 2)
    return RegionParams(shift=per_region[..., :2], affine=affine, covar=covar_from_affine(affine))


class AVDNetwork(nn.Module):
    """Region params of the driving pose, re-shaped for the identity: RegionParams -> RegionParams."""

    num_regions: int
    id_bottle_size: int = 64
    pose_bottle_size: int = 64
    revert_axis_swap: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, identity: RegionParams, pose: RegionParams, train: bool = False) -> RegionParams:
        if self.revert_axis_swap:
            relative = identity.affine @ inverse_2x2(pose.affine)
            identity = RegionParams(shift=identity.shift, affine=identity.affine * jnp.sign(relative[..., 0:1, 0:1]))
        out_size = 6 * self.num_regions
        # The three Sequentials are flattened into this module so names read `id_encoder_0`, `decoder_9`, ...
        pose_emb = self._mlp((256, 512, 1024, self.pose_bottle_size), "pose_encoder", params_to_embedding(pose), train)
        id_emb = self._mlp((256, 512, 1024, self.id_bottle_size), "id_encoder", params_to_embedding(identity), train)
        rec = self._mlp((1024, 512, 256, out_size), "decoder", jnp.concatenate([pose_emb, id_emb], axis=-1), train)
        return embedding_to_params(rec, self.num_regions)

    def _mlp(self, widths, prefix, x, train):
        for layer, width in enumerate(widths):
            x = Linear(width, name=f"{prefix}_{3 * layer}")(x)
            if layer < len(widths) - 1:
                x = BatchNorm(axis_name=self.bn_axis_name, relu=True, name=f"{prefix}_{3 * layer + 1}")(x, train)
        return x
