"""Per-frame reconstruction scores: L1 (the original's), PSNR and SSIM (dm-pix), images in [0, 1]."""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _frame_scores(prediction, target):
    l1 = jnp.mean(jnp.abs(prediction - target), axis=(1, 2, 3))
    return {"l1": l1, "psnr": dm_pix.psnr(prediction, target), "ssim": dm_pix.ssim(prediction, target, max_val=1.0)}


def frame_scores(prediction, target) -> dict[str, np.ndarray]:
    """{"l1", "psnr", "ssim"}: (T,) float64 arrays for (T, H, W, C) predictions and targets in [0, 1].

    l1 is mean |prediction - target| per frame, as the original's reconstruction score;
    PSNR and SSIM (11x11 Gaussian window, sigma 1.5) come from dm-pix.
    """
    prediction = jnp.asarray(prediction, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if prediction.shape != target.shape or prediction.ndim != 4:
        raise ValueError(f"expected two (T, H, W, C) arrays of one shape, got {prediction.shape} and {target.shape}")
    scores = jax.device_get(_frame_scores(prediction, target))
    return {k: np.asarray(v, np.float64) for k, v in scores.items()}


def summarize(per_frame: dict[str, list]) -> dict[str, float]:
    """Means over all frames (every frame of every video weighs the same, as the original's L1)."""
    return {k: float(np.mean(np.concatenate([np.atleast_1d(x) for x in v]))) for k, v in per_frame.items() if v}
