"""Occlusion-aware generator: the source encoded, warped by the flow, masked by occlusion, decoded."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mraa_jax import geometry
from mraa_jax.modules.blocks import Conv, DownBlock, ResBlock, SameBlock, UpBlock
from mraa_jax.modules.flow_predictor import PixelwiseFlowPredictor
from mraa_jax.region_params import RegionParams


def warp(x: jax.Array, flow: jax.Array) -> jax.Array:
    """Sample x (B, H, W, C) at the flow (B, h, w, 2), resized bilinearly to x's size."""
    flow = geometry.resize_bilinear(flow, x.shape[1], x.shape[2])
    return geometry.grid_sample(x, flow)


def warp_and_blend(x: jax.Array, motion: dict, previous: jax.Array | None = None) -> jax.Array:
    """Warp x by the flow, then blend with the occlusion map: warped*occ + previous*(1-occ)."""
    warped = warp(x, motion["optical_flow"])
    occlusion = motion.get("occlusion_map")
    if occlusion is None:
        return warped
    occlusion = geometry.resize_bilinear(occlusion, x.shape[1], x.shape[2])
    if previous is None:
        return warped * occlusion
    return warped * occlusion + previous * (1 - occlusion)


class Bottleneck(nn.Module):
    """ResBlocks r0, r1, ... at the deepest resolution."""

    num_blocks: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(self.num_blocks):
            x = ResBlock(self.bn_axis_name, name=f"r{i}")(x, train)
        return x


class Generator(nn.Module):
    """Renders the source image in the driving frame's region configuration.

    Returns a dict with `prediction` (B, H, W, C), `deformed` (the source warped
    by the flow, full resolution), `optical_flow` (B, h, w, 2) and, with an
    occlusion-estimating flow predictor, `occlusion_map` (B, h, w, 1).

    `dtype`: compute dtype of the encoder, bottleneck and up blocks (and of the flow
    predictor's hourglass). Warping (sampling coordinates, weights) and occlusion
    blending run in float32, their results cast back to `dtype`; the final conv, its
    sigmoid and every output are float32.
    """

    num_channels: int
    num_regions: int
    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    pixelwise_flow_predictor_params: tuple  # (name, value) pairs of the flow predictor config
    skips: bool = False
    revert_axis_swap: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    def setup(self):
        be, mf, n = self.block_expansion, self.max_features, self.num_down_blocks
        ax = self.bn_axis_name
        self.first = SameBlock(be, 7, 3, ax)
        self.down_blocks = [DownBlock(min(mf, be * 2 ** (i + 1)), ax) for i in range(n)]
        self.bottleneck = Bottleneck(self.num_bottleneck_blocks, ax)
        self.up_blocks = [UpBlock(min(mf, be * 2 ** (n - i - 1)), ax) for i in range(n)]
        self.final = Conv(self.num_channels, 7, 3)
        self.pixelwise_flow_predictor = PixelwiseFlowPredictor(
            num_regions=self.num_regions,
            num_channels=self.num_channels,
            revert_axis_swap=self.revert_axis_swap,
            bn_axis_name=ax,
            dtype=self.dtype,
            **dict(self.pixelwise_flow_predictor_params),
        )

    def encode(self, source_image: jax.Array, train: bool = False) -> list[jax.Array]:
        """Source features at every level: [first, down_1, ..., down_n]."""
        out = self.first(source_image.astype(self.dtype), train)
        levels = [out]
        for block in self.down_blocks:
            out = block(out, train)
            levels.append(out)
        return levels

    def motion(
        self, source_image, driving: RegionParams, source: RegionParams, bg_params=None, train: bool = False
    ) -> dict:
        """The flow predictor's output: optical_flow and, if estimated, occlusion_map."""
        return self.pixelwise_flow_predictor(source_image, driving, source, bg_params, train)

    def decode(self, source_image: jax.Array, levels: list[jax.Array], motion: dict, train: bool = False) -> jax.Array:
        """Warp the source features by the motion and decode them into the prediction."""
        n = self.num_down_blocks
        out = warp_and_blend(levels[n], motion).astype(self.dtype)
        out = self.bottleneck(out, train)
        for i, block in enumerate(self.up_blocks):
            if self.skips:
                out = warp_and_blend(levels[n - i], motion, previous=out).astype(self.dtype)
            out = block(out, train)
        if self.skips:
            out = warp_and_blend(levels[0], motion, previous=out)
        out = jax.nn.sigmoid(self.final(out.astype(jnp.float32)))
        if self.skips:
            out = warp_and_blend(source_image, motion, previous=out)
        return out

    def __call__(
        self,
        source_image: jax.Array,
        driving: RegionParams,
        source: RegionParams,
        bg_params: jax.Array | None = None,
        train: bool = False,
    ) -> dict:
        levels = self.encode(source_image, train)
        motion = self.motion(source_image, driving, source, bg_params, train)
        out = {
            "prediction": self.decode(source_image, levels, motion, train),
            "deformed": warp(source_image, motion["optical_flow"]),
            "optical_flow": motion["optical_flow"],
            "occlusion_map": motion.get("occlusion_map"),
        }
        return out
