"""Streaming animation: a source image encoded once, then driving frames animated one at a time.

    stream = model.stream(source_image, mode="relative")
    for frame in camera:                 # (H, W, C) uint8, or float in [0, 1], the source's size
        shown = stream.push(frame)       # (H, W, C) float32 NumPy in [0, 1]

The pushed frames come out as `model.animate(source_image, frames, mode)` would animate the clip
they make (tests/test_streaming.py: within 1e-5). Each push is one call of one compiled program
(`model.jitted.stream_step`, compiled once per model, mode and frame size, and shared by the model's
streams): the frame goes to the device, the animated frame comes back (with the first one in
relative mode also the movement scale, 4 bytes, to check it), nothing else crosses. The source's
encoding and region params, the reference and the movement scale stay on the device.

The reference (relative mode) is the first pushed frame. The per-frame program computes each
frame's region params anyway; on the first push a flag held on the device makes it take them as
the reference, and it returns the reference and the movement scale for the next pushes. So the
first push runs the same program as every other one: no second encoder to compile, no second
pass of the region predictor over the first frame, and no extra host round-trip for the scale,
which `animate` computes on the host with Qhull and the program computes with `hull_area`. Standard and
AVD modes use no reference (the AVD network maps each frame's regions onto the source identity).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mraa_jax.errors import InputError
from mraa_jax.model import animation_chunk


def hull_area(points: jax.Array) -> jax.Array:
    """Area of the convex hull of (K, 2) points, jittable: gift wrapping, K steps of K x K work.

    What `animation.movement_scale` takes from scipy's ConvexHull (Qhull), to float32 precision;
    0 where the points are collinear or fewer than 3 distinct.
    """
    points = jnp.asarray(points, jnp.float32)
    start = jnp.lexsort((points[:, 1], points[:, 0]))[0]  # the leftmost point (lowest on ties) is on the hull

    def step(carry, _):
        current, done, twice_area = carry
        d = points - points[current]
        dist2 = jnp.sum(d * d, axis=-1)
        cross = d[:, None, 0] * d[None, :, 1] - d[:, None, 1] * d[None, :, 0]  # [q, r] > 0: r left of current -> q
        tol = 1e-6 * jnp.max(dist2)
        # The next vertex, counter-clockwise: no point right of current -> q; of collinear ones the farthest.
        valid = (dist2 > tol) & jnp.all(cross >= -tol, axis=1)
        following = jnp.argmax(jnp.where(valid, dist2, -1.0))
        p, q = points[current], points[following]
        twice_area = twice_area + jnp.where(done, 0.0, p[0] * q[1] - p[1] * q[0])  # shoelace
        return (following, done | (following == start), twice_area), None

    (_, _, twice_area), _ = jax.lax.scan(step, (start, jnp.bool_(False), jnp.float32(0)), None, length=points.shape[0])
    return twice_area / 2


def stream_step(nets, mode: str, variables, encoding, state, first, frame):
    """One driving frame (H, W, C) -> (prediction (H, W, C), reference, scale) for the next push.

    encoding: (source (1, H, W, C), generator levels, source region params); state: (reference
    region params, movement scale), taken from this frame where `first` (relative mode).
    """
    source, levels, source_params = encoding
    reference, scale = state
    chunk = frame[None]
    driving_full = nets.region_predictor.apply(variables["region_predictor"], chunk)
    if mode == "relative":
        own = driving_full.without_heatmap()
        reference = jax.tree_util.tree_map(lambda r, d: jnp.where(first, d, r), reference, own)
        own_scale = jnp.sqrt(hull_area(source_params.shift[0])) / jnp.sqrt(hull_area(own.shift[0]))
        scale = jnp.where(first, own_scale, scale)
    out = animation_chunk(
        nets,
        variables,
        source,
        levels,
        source_params,
        reference,
        chunk,
        scale,
        mode=mode,
        visual=False,
        driving_full=driving_full,
    )
    return out["prediction"][0], reference, scale


def _as_image(image, name: str) -> np.ndarray:
    """uint8 (scaled by 1/255) or float images as float32 NumPy, or an InputError naming `name`."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0  # as the demo converts its frames
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"{name}: expected uint8 or float pixels in [0, 1], got {image.dtype}")
    return image.astype(np.float32)


class Stream:
    """Animates `source_image` with driving frames pushed one at a time (`MRAA.stream`)."""

    def __init__(self, model, source_image, mode: str = "relative"):
        model.check_mode(mode)
        source = _as_image(source_image, "source_image")
        channels = model.config.model_params.num_channels
        if source.ndim != 3 or source.shape[-1] != channels:
            raise InputError(f"source_image: expected (H, W, {channels}), got shape {source.shape}")
        self.model, self.mode, self.shape = model, mode, source.shape
        self.frames = 0  # pushed and animated so far
        self._variables = jax.device_put(model.variables)  # once: jit would copy host (NumPy) weights in every call
        source = jax.device_put(source[None])
        source_params = model.jitted.regions(self._variables["region_predictor"], source).without_heatmap()
        self._encoding = (source, model.jitted.encode(self._variables["generator"], source), source_params)
        # Until the first push the reference is a stand-in of the right shapes (the program then takes the frame's own).
        self._state = (source_params, jax.device_put(np.float32(1)))
        self._first, self._later = jax.device_put(np.bool_(True)), jax.device_put(np.bool_(False))

    def push(self, frame) -> np.ndarray:
        """Animate one (H, W, C) driving frame (uint8, or float in [0, 1]): (H, W, C) float32 NumPy in [0, 1]."""
        frame = _as_image(frame, "frame")
        if frame.shape != self.shape:
            raise InputError(f"frame: shape {frame.shape}, expected the source image's {self.shape}")
        first = self.frames == 0
        with jax.transfer_guard("disallow"):  # nothing crosses implicitly; the frame goes explicitly
            prediction, reference, scale = self.model.jitted.stream_step(
                self.mode,
                self._variables,
                self._encoding,
                self._state,
                self._first if first else self._later,
                jax.device_put(frame),
            )
        if first and self.mode == "relative":
            # The scale comes back with the first frame only, to check it.
            prediction, value = jax.device_get((prediction, scale))
            if not (np.isfinite(value) and value > 0):
                raise InputError(
                    "relative animation needs region centres that span an area (at least 3 regions, "
                    "not collinear), in the source image and in the first frame"
                )
        else:
            prediction = jax.device_get(prediction)
        self._state = (reference, scale)
        self.frames += 1
        return prediction
