"""The original's training augmentations, applied identically to both frames of a pair.

Order as in the original (`augmentation.py`): time flip (swap the frames), horizontal flip,
each with probability 1/2; then colour jitter with factors drawn once per pair
(brightness, contrast, saturation in [1 - x, 1 + x], hue shift in [-x, x] turns) and the four
operations in a random order, with PIL's definitions (contrast around the frame's mean grey
level, saturation towards its grey image, hue rotated in HSV). Unlike the original, values
stay float between operations (no uint8 rounding). Randomness comes only from the
`np.random.Generator` passed in, so a pipeline is reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

_GREY = np.array([0.299, 0.587, 0.114], np.float32)
# The original's augmentation groups that are implemented, and their parameters.
_GROUPS = {
    "flip_param": ("horizontal_flip", "time_flip"),
    "jitter_param": ("brightness", "contrast", "saturation", "hue"),
}


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Which augmentations run, and the jitter ranges (0 turns one off)."""

    horizontal_flip: bool = True
    time_flip: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1

    @classmethod
    def off(cls) -> Augmentation:
        return cls(False, False, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_params(cls, params: Mapping | None) -> Augmentation:
        """From the original's `dataset_params.augmentation_params` (flip_param, jitter_param).

        A missing group or parameter is off, as with the original's classes (their defaults:
        no flip, jitter 0), so that the values of `off()` fill in for it. The original's
        optional resize/rotation/crop groups are not implemented and are refused rather than
        silently ignored.
        """
        if not params:
            return cls.off()
        params = dict(params)
        unknown = set(params) - set(_GROUPS)
        if unknown:
            raise NotImplementedError(
                f"augmentation groups {sorted(unknown)} are not implemented "
                "(only flip_param and jitter_param, the ones the published configs use)"
            )
        given = {}
        for group, values in params.items():
            bad = set(values or {}) - set(_GROUPS[group])
            if bad:
                raise ValueError(f"unknown augmentation parameters {sorted(bad)}")
            given.update(values or {})
        off = dataclasses.asdict(cls.off())
        return cls(**{name: type(value)(given[name]) if name in given else value for name, value in off.items()})

    @property
    def active(self) -> bool:
        return self != Augmentation.off()


def shift_hue(x: np.ndarray, shift: float) -> np.ndarray:
    """float RGB (..., 3) in [0, 1] with its HSV hue rotated by `shift` turns (saturation, value kept).

    The same as colorsys' rgb -> hsv, h += shift, hsv -> rgb, written as whole-array operations
    on the hexagonal hue (6x faster than converting both ways): channel n in (5, 3, 1) for
    (R, G, B) is max - (max - min) * clip(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6.
    """
    r, g, b = (np.ascontiguousarray(x[..., i]) for i in range(3))
    maxc = np.maximum(np.maximum(r, g), b)
    delta = maxc - np.minimum(np.minimum(r, g), b)
    inv = 1.0 / np.where(delta > 0, delta, 1.0)
    h6 = np.where(maxc == r, (g - b) * inv, np.where(maxc == g, (b - r) * inv + 2.0, (r - g) * inv + 4.0))
    h6 += np.float32(6.0 * (shift % 1.0) + 6.0)  # keep it positive
    out = np.empty(x.shape, np.float32)
    for i, n in enumerate((5.0, 3.0, 1.0)):
        k = h6 + n
        k -= 6.0 * np.floor(k * (1.0 / 6.0))
        out[..., i] = maxc - delta * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return out


def _grey(x):
    return x @ _GREY


def color_jitter(frames: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Float frames (N, H, W, 3) in [0, 1], jittered with one draw of factors for all N frames."""
    ops = []
    if aug.brightness:
        f = rng.uniform(max(0.0, 1 - aug.brightness), 1 + aug.brightness)
        ops.append(lambda x, f=f: x * f)
    if aug.contrast:
        f = rng.uniform(max(0.0, 1 - aug.contrast), 1 + aug.contrast)
        ops.append(lambda x, f=f: _grey(x).mean((-2, -1), keepdims=True)[..., None] * (1 - f) + x * f)
    if aug.saturation:
        f = rng.uniform(max(0.0, 1 - aug.saturation), 1 + aug.saturation)
        ops.append(lambda x, f=f: _grey(x)[..., None] * (1 - f) + x * f)
    if aug.hue:
        shift = rng.uniform(-aug.hue, aug.hue)

        ops.append(lambda x, shift=shift: shift_hue(x, shift))
    for k in rng.permutation(len(ops)):
        frames = np.clip(ops[k](frames), 0.0, 1.0)
    return frames.astype(np.float32, copy=False)


def augment_pair(frames: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """uint8 (2, H, W, 3) -> float32 (2, H, W, 3) in [0, 1], both frames augmented alike."""
    if aug.time_flip and rng.random() < 0.5:
        frames = frames[::-1]
    if aug.horizontal_flip and rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    out = np.asarray(frames, np.float32) * np.float32(1 / 255)
    if aug.brightness or aug.contrast or aug.saturation or aug.hue:
        out = color_jitter(out, aug, rng)
    return np.ascontiguousarray(out)
