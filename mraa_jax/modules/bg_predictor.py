"""Background motion predictor: one 3x3 transform per image pair (zero, shift, affine or perspective)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mraa_jax.modules.blocks import Encoder, Linear

BG_TYPES = ("zero", "shift", "affine", "perspective")
_IDENTITY_BIAS = {
    "shift": [0.0, 0.0],
    "affine": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "perspective": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
}


def bg_matrix(prediction: jax.Array, bg_type: str) -> jax.Array:
    """(B, 3, 3) matrices from the linear layer's outputs, starting from the identity."""
    batch = prediction.shape[0]
    matrix = jnp.tile(jnp.eye(3, dtype=prediction.dtype), (batch, 1, 1))
    if bg_type == "shift":
        return matrix.at[:, :2, 2].set(prediction)
    matrix = matrix.at[:, :2, :].set(prediction[:, :6].reshape(batch, 2, 3))
    if bg_type == "perspective":
        matrix = matrix.at[:, 2, :2].set(prediction[:, 6:8])
    return matrix


class BGMotionPredictor(nn.Module):
    """(source, driving) (B, H, W, C) -> (B, 3, 3) background transform; identity for 'zero'.

    `dtype`: compute dtype of the encoder; pooling, the linear layer and the matrix are float32.
    """

    block_expansion: int
    num_channels: int
    max_features: int
    num_blocks: int
    bg_type: str = "zero"
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, source: jax.Array, driving: jax.Array, train: bool = False) -> jax.Array:
        if self.bg_type not in BG_TYPES:
            raise ValueError(f"bg_type must be one of {', '.join(BG_TYPES)}, got {self.bg_type!r}")
        if self.bg_type == "zero":
            return jnp.tile(jnp.eye(3, dtype=source.dtype), (source.shape[0], 1, 1))
        levels = Encoder(self.block_expansion, self.num_blocks, self.max_features, self.bn_axis_name, name="encoder")(
            jnp.concatenate([source, driving], axis=-1).astype(self.dtype), train
        )
        pooled = levels[-1].astype(jnp.float32).mean(axis=(1, 2))
        bias = np.asarray(_IDENTITY_BIAS[self.bg_type], np.float32)
        prediction = Linear(
            len(bias), kernel_init=nn.initializers.zeros, bias_init=lambda *_: jnp.asarray(bias), name="fc"
        )(pooled)
        return bg_matrix(prediction, self.bg_type)
