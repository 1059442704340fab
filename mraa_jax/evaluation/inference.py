"""Fast animation and reconstruction of whole videos: the source encoded once, driving frames in jitted chunks.

    from mraa_jax import evaluation
    video = evaluation.animate(model, source, driving, mode="relative", chunk_size=16, find_best_frame=True)
    outs = evaluation.run_frames(model, source, driving, mode="reconstruction", visual=True)

Every frame is computed independently of the others (given the source and the
`initial` frame), so chunking changes nothing but speed: a chunk of B frames is one
call of a compiled program, the last chunk is padded by repeating its last frame,
and the results stay on the device until the loop ends (one transfer at the end).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mraa_jax import animation
from mraa_jax.model import ANIMATION_CHUNK_MODES, check_animation_inputs, padded_chunks
from mraa_jax.region_params import RegionParams

RUN_MODES = ANIMATION_CHUNK_MODES


def _check_inputs(model, source_image, driving_frames):
    return check_animation_inputs(source_image, driving_frames, model.config.model_params.num_channels)


def driving_regions(model, frames, chunk_size: int = 16) -> RegionParams:
    """Region params (heatmaps dropped) of (T, H, W, C) frames, in jitted chunks; stays on the device."""
    frames = jnp.asarray(frames, jnp.float32)
    variables = jax.device_put(model.variables["region_predictor"])
    parts = [
        jax.tree_util.tree_map(lambda x, n=valid: x[:n], model.jitted.regions(variables, chunk).without_heatmap())
        for chunk, valid in padded_chunks(frames, chunk_size)
    ]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)


def region_layout(params: RegionParams) -> jax.Array:
    """(B, D) descriptors of the region layout, invariant to translation and scale of the figure.

    Centres minus their mean, divided by their spread (root mean square distance to the
    mean), and the region shapes (affines, if any) divided by the same spread.
    """
    shift = jnp.asarray(params.shift, jnp.float32)
    centred = shift - shift.mean(axis=1, keepdims=True)
    spread = jnp.sqrt(jnp.mean(jnp.sum(centred**2, axis=-1), axis=1))  # (B,)
    spread = jnp.maximum(spread, 1e-6)[:, None]
    parts = [(centred / spread[..., None]).reshape(shift.shape[0], -1)]
    if params.affine is not None:
        parts.append(jnp.asarray(params.affine, jnp.float32).reshape(shift.shape[0], -1) / spread)
    return jnp.concatenate(parts, axis=-1)


def find_best_frame(model, source_image, driving_frames, chunk_size: int = 16) -> int:
    """Index of the driving frame whose region layout (`region_layout`) is closest to the source's."""
    source_image, driving_frames = _check_inputs(model, source_image, driving_frames)
    source = model.regions(source_image[None]).without_heatmap()
    driving = driving_regions(model, driving_frames, chunk_size)
    distance = jnp.sum((region_layout(driving) - region_layout(source)) ** 2, axis=-1)
    return int(jnp.argmin(distance))


_find_best_frame = find_best_frame  # animate_outputs' argument of the same name shadows it


class _CallbackBar:
    """The part of a tqdm bar that run_frames uses, reporting (frames done, total) to a function."""

    def __init__(self, report, total: int):
        self.report, self.total, self.done = report, total, 0
        report(0, total)

    def update(self, n: int) -> None:
        self.done += n
        self.report(self.done, self.total)

    def close(self) -> None:
        pass


def run_frames(
    model,
    source_image,
    driving_frames,
    mode: str = "relative",
    chunk_size: int = 16,
    visual: bool = False,
    initial_frame=None,
    progress: bool | Callable[[int, int], None] = False,
    to_host: bool = True,
) -> dict:
    """Outputs of every driving frame: {"prediction": (T, H, W, C)}, and with `visual` also
    "deformed", "occlusion_map" (if the model predicts one), "driving_shift" (T, K, 2),
    "driving_heatmap" (T, h, w, K), "source_params" (RegionParams of the source, heatmap included).

    mode: standard, relative, avd, or reconstruction (driving regions plus the background
    matrix from (source, driving), as in training). initial_frame: the (H, W, C) frame the
    relative mode measures motion from (default: the first driving frame). progress: True for a
    tqdm bar, or a function called as progress(frames done, total) after each chunk (the web demo's
    progress bar). The loop only dispatches work; the outputs are gathered once at the end (NumPy
    arrays if `to_host`).
    """
    if mode != "reconstruction":
        model.check_mode(mode)
    source_image, driving_frames = _check_inputs(model, source_image, driving_frames)
    # Weights on the device once (a loaded model holds NumPy arrays, which jit would copy in every call).
    variables = jax.device_put(model.variables)
    source = source_image[None]
    source_full = model.regions(source)
    source_params = source_full.without_heatmap()
    initial_image = driving_frames[:1] if initial_frame is None else jnp.asarray(initial_frame, jnp.float32)[None]
    initial = model.regions(initial_image).without_heatmap()
    scale = animation.movement_scale(source_params.shift[0], initial.shift[0]) if mode == "relative" else 1.0
    levels = model.jitted.encode(variables["generator"], source)
    scale = jnp.float32(scale)
    num_frames = driving_frames.shape[0]
    parts, previous = [], None
    bar = None
    if callable(progress):
        bar = _CallbackBar(progress, num_frames)
    elif progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_frames, unit="frame", desc=f"animating ({mode})", leave=False)
    with jax.transfer_guard_device_to_host("disallow"):  # nothing comes back to the host inside the loop
        for chunk, valid in padded_chunks(driving_frames, chunk_size):
            out = model.jitted.animation_chunk(
                variables, source, levels, source_params, initial, chunk, scale, mode=mode, visual=visual
            )
            parts.append({k: v[:valid] for k, v in out.items()})
            if bar is not None:
                # Wait for the previous chunk (no transfer): the bar then follows the computation, one chunk behind the dispatch.
                if previous is not None:
                    jax.block_until_ready(previous[0])
                    bar.update(previous[1])
                previous = (out["prediction"], valid)
    if bar is not None:
        jax.block_until_ready(previous[0])
        bar.update(previous[1])
        bar.close()
    result = {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}
    if visual:
        result["source_params"] = source_full
    return jax.device_get(result) if to_host else result


def animate_outputs(
    model,
    source_image,
    driving_frames,
    mode: str = "relative",
    chunk_size: int = 16,
    find_best_frame: bool = False,
    visual: bool = False,
    progress: bool | Callable[[int, int], None] = False,
) -> dict:
    """`run_frames` for animation, with the original demo's --find_best_frame.

    With find_best_frame, the driving frame closest to the source in region layout is the
    `initial` frame that relative motion is measured from. (The original animates forward
    and backward from it; every frame depends only on the source and that frame, so one
    pass in the original order computes the same.) Adds "best_frame".
    """
    model.check_mode(mode)
    if not find_best_frame:
        return run_frames(model, source_image, driving_frames, mode, chunk_size, visual, progress=progress)
    source_image, driving_frames = _check_inputs(model, source_image, driving_frames)
    best = _find_best_frame(model, source_image, driving_frames, chunk_size)
    out = run_frames(model, source_image, driving_frames, mode, chunk_size, visual, driving_frames[best], progress)
    out["best_frame"] = best
    return out


def animate(
    model,
    source_image,
    driving_frames,
    mode: str = "relative",
    chunk_size: int = 16,
    find_best_frame: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Animate one (H, W, C) image in [0, 1] with (T, H, W, C) driving frames: (T, H, W, C) float32 NumPy."""
    return animate_outputs(model, source_image, driving_frames, mode, chunk_size, find_best_frame, False, progress)[
        "prediction"
    ]


def animate_frame_by_frame(
    model, source_image, driving_frames, mode: str = "relative", initial_frame: np.ndarray | None = None
) -> np.ndarray:
    """Reference: one frame at a time through the public single-step API (`regions`, `avd`, `generate`)."""
    source_image, driving_frames = _check_inputs(model, source_image, driving_frames)
    source = source_image[None]
    sp = model.regions(source).without_heatmap()
    initial = model.regions(
        driving_frames[:1] if initial_frame is None else jnp.asarray(initial_frame)[None]
    ).without_heatmap()
    scale = animation.movement_scale(sp.shift[0], initial.shift[0]) if mode == "relative" else 1.0
    frames = []
    for t in range(driving_frames.shape[0]):
        dp = model.regions(driving_frames[t : t + 1]).without_heatmap()
        if mode == "reconstruction":
            out = model.generate(source, sp, dp, model.background(source, driving_frames[t : t + 1]))
        else:
            params = animation.animation_params(mode, sp, dp, initial, scale, model.avd)
            out = model.generate(source, sp, params)
        frames.append(np.asarray(out["prediction"][0]))
    return np.stack(frames)
