"""Layers and blocks shared by every MRAA network (the original's building blocks), NHWC.

Layers compute in the dtype of their input (kernels are cast to it), so a network
computes in bfloat16 when its input is cast to bfloat16; parameters stay float32
and BatchNorm normalises and keeps its statistics in float32.

Parameter names follow the original (`conv`, `norm`, `down_blocks_0`, ...) so
that a converted PyTorch state dict maps onto them mechanically. Initialisers
follow PyTorch's defaults, so that training from scratch starts where the
original starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mraa_jax import geometry
from mraa_jax.modules.batch_norm import normalize_with_batch_statistics, sample_count
from mraa_jax.modules.conv import conv2d
from mraa_jax.modules.upsample_conv import upsample_conv2d


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nn.Module):
    """2-D convolution with bias; kernel (kh, kw, in, out), PyTorch's default init.

    With `upsample_input`, the input is first upsampled x2 (nearest neighbour; see
    upsample_conv.upsample_conv2d, which mostly does without the upsampled copy).
    """

    features: int
    kernel_size: int = 3
    padding: int = 0
    upsample_input: bool = False
    kernel_init: nn.initializers.Initializer | None = None
    bias_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        bound = 1.0 / math.sqrt(x.shape[-1] * k * k)
        kernel = self.param("kernel", self.kernel_init or _uniform(bound), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init or _uniform(bound), (self.features,))
        kernel = kernel.astype(x.dtype)
        out = upsample_conv2d(x, kernel, self.padding) if self.upsample_input else conv2d(x, kernel, self.padding)
        return out + bias.astype(x.dtype)


class Linear(nn.Module):
    """Fully connected layer; kernel (in, out), PyTorch's default init."""

    features: int
    kernel_init: nn.initializers.Initializer | None = None
    bias_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bound = 1.0 / math.sqrt(x.shape[-1])
        kernel = self.param("kernel", self.kernel_init or _uniform(bound), (x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init or _uniform(bound), (self.features,))
        return x @ kernel.astype(x.dtype) + bias.astype(x.dtype)


class BatchNorm(nn.Module):
    """BatchNorm over the last axis with PyTorch's semantics, then ReLU if `relu`.

    Train mode normalises with the batch mean and biased variance and moves the
    running statistics by `momentum` (PyTorch convention: new = (1-m) old + m batch),
    the running variance with the unbiased estimate. With `axis_name`, the batch
    statistics are averaged over that device axis (synchronised BatchNorm). The ReLU
    is part of the layer so that training keeps only the layer's input for the
    backward pass (batch_norm.normalize_with_batch_statistics).
    """

    momentum: float = 0.1
    epsilon: float = 1e-5
    axis_name: str | None = None
    relu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        if not train:
            inv = jax.lax.rsqrt(running_var.value + self.epsilon) * scale
            # Normalised in float32 whatever x's dtype (bfloat16 compute): one fused elementwise pass.
            out = (x.astype(jnp.float32) - running_mean.value) * inv + bias
            return (nn.relu(out) if self.relu else out).astype(x.dtype)
        out, mean, var = normalize_with_batch_statistics(x, scale, bias, self.epsilon, self.axis_name, self.relu)
        if not self.is_initializing():
            count = sample_count(x, self.axis_name)
            m = self.momentum
            running_mean.value = (1 - m) * running_mean.value + m * mean
            running_var.value = (1 - m) * running_var.value + m * var * (count / max(count - 1, 1))
        return out


class DownBlock(nn.Module):
    """conv 3x3 -> BN -> ReLU -> 2x2 average pool."""

    features: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv(self.features, 3, 1, name="conv")(x)
        x = BatchNorm(axis_name=self.bn_axis_name, relu=True, name="norm")(x, train)
        return geometry.avg_pool_2x(x)


class UpBlock(nn.Module):
    """nearest x2 upsample -> conv 3x3 -> BN -> ReLU."""

    features: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv(self.features, 3, 1, upsample_input=True, name="conv")(x)
        return BatchNorm(axis_name=self.bn_axis_name, relu=True, name="norm")(x, train)


class SameBlock(nn.Module):
    """conv k x k (padding p) -> BN -> ReLU, resolution unchanged."""

    features: int
    kernel_size: int = 3
    padding: int = 1
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv(self.features, self.kernel_size, self.padding, name="conv")(x)
        return BatchNorm(axis_name=self.bn_axis_name, relu=True, name="norm")(x, train)


class ResBlock(nn.Module):
    """Pre-activation residual block: BN ReLU conv BN ReLU conv, plus the input."""

    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        out = BatchNorm(axis_name=self.bn_axis_name, relu=True, name="norm1")(x, train)
        out = Conv(c, 3, 1, name="conv1")(out)
        out = BatchNorm(axis_name=self.bn_axis_name, relu=True, name="norm2")(out, train)
        out = Conv(c, 3, 1, name="conv2")(out)
        return out + x


def encoder_features(block_expansion: int, num_blocks: int, max_features: int) -> list[int]:
    """Output channels of each DownBlock of an Encoder."""
    return [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]


class Encoder(nn.Module):
    """`num_blocks` DownBlocks; returns every level, the input included."""

    block_expansion: int
    num_blocks: int = 3
    max_features: int = 256
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool) -> list[jax.Array]:
        levels = [x]
        for i, features in enumerate(encoder_features(self.block_expansion, self.num_blocks, self.max_features)):
            levels.append(DownBlock(features, self.bn_axis_name, name=f"down_blocks_{i}")(levels[-1], train))
        return levels


class Decoder(nn.Module):
    """UpBlocks from the deepest level up, concatenating [upsampled, skip] after each."""

    block_expansion: int
    num_blocks: int = 3
    max_features: int = 256
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, levels: Sequence[jax.Array], train: bool) -> jax.Array:
        levels = list(levels)
        out = levels.pop()
        for j, i in enumerate(reversed(range(self.num_blocks))):
            features = min(self.max_features, self.block_expansion * 2**i)
            out = UpBlock(features, self.bn_axis_name, name=f"up_blocks_{j}")(out, train)
            out = jnp.concatenate([out, levels.pop()], axis=-1)
        return out


class Hourglass(nn.Module):
    """Encoder then Decoder; output has block_expansion + input channels."""

    block_expansion: int
    num_blocks: int = 3
    max_features: int = 256
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool) -> jax.Array:
        args = (self.block_expansion, self.num_blocks, self.max_features, self.bn_axis_name)
        return Decoder(*args, name="decoder")(Encoder(*args, name="encoder")(x, train), train)
