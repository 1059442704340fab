"""Procedural clips of 2-D articulated figures: the content of the built-in synthetic dataset.

Every figure has one body plan, as every face or person of a real dataset does: a small upright
elliptical body (tilted by at most about 15 degrees at rest) and four long, thick limbs, each one
rigid capsule (some end in a round blob), joined to the body at pivots near its four diagonals
(upper left, upper right, lower left, lower right). So a region can learn "the upper-left
limb" the way it learns "the left eye"; with limbs anywhere around a body turned any way, the
main job's regions all settled on the body. Every limb turns about its pivot through its own
angle over time (amplitudes of 35-65 degrees, so two frames of a clip differ by tens of
degrees), the body tilts, and the figure wanders within the room the frame leaves it, always
fully inside (1.5 pixels of margin). The limbs are most of the figure and most of its motion.
Textures (stripes, checks, gradients, spots) are painted in each part's own coordinates, so
they move with the part: each part moves rigidly, which is what a region-based motion model
should discover.
Backgrounds are static, smooth (plain, gradient, waves or soft stripes at least 8 pixels wide
at 64x64) and light, with darker figures. No sharp-edged patterns: reproducing a static
checkerboard measures how sharp a small generator is, not the motion. No dark backgrounds:
with both polarities the main job's regions ringed the body on the dark ones. The tuning
behind these choices: docs/synthetic_dataset.md.
Rendering is 2x supersampled, so edges are anti-aliased.

    clip = render_clip(clip_rng(seed=0, split="train", index=7), num_frames=32, size=64)
    clip.frames  # uint8 (T, 64, 64, 3); clip.masks, clip.parts, clip.joints, clip.angles: ground truth

A clip is a pure function of (seed, split, index, num_frames, size): the same arguments give
the same bytes on a given machine (numpy's float math may differ in the last bit across CPUs).
Motion is defined over clip time 0..1, so num_frames sets the temporal sampling, not the motion.
"""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np

SPLITS = {"train": 0, "test": 1}
SUPERSAMPLE = 2
MARGIN_PX = 1.5
NUM_LIMBS = 4
MIN_TRAVEL = (
    0.0  # the body centre's allowed range, as a fraction of the frame on each axis: 0 = the figure only has to fit
)


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of clip `index` of `split` for a dataset seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


@dataclasses.dataclass(frozen=True)
class Clip:
    """One rendered clip and its ground truth (coordinates in pixels, x along the width)."""

    frames: np.ndarray  # uint8 (T, S, S, 3)
    masks: np.ndarray  # float32 (T, S, S): figure coverage in [0, 1]
    parts: np.ndarray  # int8 (T, S, S): index of the visible part (0 = body), -1 = background
    joints: np.ndarray  # float32 (T, J, 2): pivots (body-limb joints)
    angles: np.ndarray  # float32 (T, P): orientation of each part (radians, image axes)
    centres: np.ndarray  # float32 (T, 2): body centre


@dataclasses.dataclass
class _Part:
    kind: str  # "ellipse" or "capsule"
    size: tuple  # ellipse (a, b) or capsule (length, radius, blob_radius)
    colours: tuple  # (c1, c2) RGB in [0, 1]
    texture: tuple  # (kind, params...)
    parent: int  # -1 for the body; for a limb, the part it hangs from (0 = body)
    anchor: tuple  # pivot in the parent's frame (u, v)
    angle0: float  # rest angle relative to the parent
    amp: float  # swing amplitude (radians)
    freq: float  # cycles per clip
    phase: float
    layer: int  # drawing order


def _hsv(h, s, v):
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _palette(rng, hue=None):
    h = rng.random() if hue is None else hue + rng.uniform(-0.06, 0.06)
    c1 = _hsv(h, rng.uniform(0.55, 1.0), rng.uniform(0.3, 0.62))
    if rng.random() < 0.5:
        c2 = c1 * rng.uniform(0.45, 0.75)
    else:
        hsv = colorsys.rgb_to_hsv(*c1)
        c2 = _hsv(hsv[0] + rng.choice([-1, 1]) * rng.uniform(0.08, 0.25), hsv[1], hsv[2] * rng.uniform(0.7, 1.0))
    return c1, c2


def _texture(rng):
    kind = rng.choice(["solid", "stripes", "checker", "gradient", "spots"], p=[0.15, 0.3, 0.2, 0.2, 0.15])
    return (str(kind), rng.uniform(0.035, 0.08), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi))


def _sample_figure(rng) -> list[_Part]:
    """Body (part 0) and limbs, sizes in frame units before the figure scale."""
    body_hue = rng.random()
    shared_palette = rng.random() < 0.4
    a, b = rng.uniform(0.08, 0.11), rng.uniform(0.06, 0.08)
    parts = [
        _Part(
            "ellipse",
            (a, b),
            _palette(rng, body_hue),
            _texture(rng),
            -1,
            (0.0, 0.0),
            np.pi / 2 + rng.uniform(-0.25, 0.25),
            rng.uniform(np.radians(5), np.radians(20)),
            rng.uniform(0.3, 1.0),
            rng.uniform(0, 2 * np.pi),
            layer=10,
        )
    ]
    for k in range(NUM_LIMBS):
        alpha = np.pi / 4 + 2 * np.pi * (k + rng.uniform(-0.1, 0.1)) / NUM_LIMBS  # near a diagonal of the body
        anchor = (0.8 * a * np.cos(alpha), 0.8 * b * np.sin(alpha))
        normal = np.arctan2(np.sin(alpha) / b, np.cos(alpha) / a)
        layer = 0 if rng.random() < 0.7 else 20
        hue = body_hue if shared_palette else None
        radius = rng.uniform(0.05, 0.07)
        length = rng.uniform(0.15, 0.21)
        blob = 0.0 if rng.random() < 0.6 else radius * rng.uniform(1.4, 2.0)
        parts.append(
            _Part(
                "capsule",
                (length, radius, blob),
                _palette(rng, hue),
                _texture(rng),
                0,
                anchor,
                normal + rng.uniform(-0.35, 0.35),
                rng.uniform(np.radians(35), np.radians(65)),
                rng.uniform(0.6, 1.4),
                rng.uniform(0, 2 * np.pi),
                layer + k,
            )
        )
    return parts


def _poses(parts, scale, tau):
    """Per part: pivot position (T, 2) relative to the body centre and absolute angle (T,)."""
    pos, ang = [], []
    for p in parts:
        swing = p.angle0 + p.amp * np.sin(2 * np.pi * p.freq * tau + p.phase)
        if p.parent < 0:
            pos.append(np.zeros((tau.size, 2)))
            ang.append(swing)
            continue
        pa, pp = ang[p.parent], pos[p.parent]
        u, v = p.anchor[0] * scale, p.anchor[1] * scale
        c, s = np.cos(pa), np.sin(pa)
        pos.append(pp + np.stack([c * u - s * v, s * u + c * v], -1))
        ang.append(pa + swing)
    return pos, ang


def _extent(parts, scale, pos, ang):
    """Bounding box (xmin, xmax, ymin, ymax) of the figure relative to its centre, over all frames."""
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for p, q, th in zip(parts, pos, ang):
        if p.kind == "ellipse":
            a, b = p.size[0] * scale, p.size[1] * scale
            c, s = np.cos(th), np.sin(th)
            half = np.stack([np.sqrt((a * c) ** 2 + (b * s) ** 2), np.sqrt((a * s) ** 2 + (b * c) ** 2)], -1)
            lo, hi = np.minimum(lo, (q - half).min(0)), np.maximum(hi, (q + half).max(0))
        else:
            length, radius, blob = (x * scale for x in p.size)
            end = q + length * np.stack([np.cos(th), np.sin(th)], -1)
            r = max(radius, blob)
            for pt in (q, end):
                lo, hi = np.minimum(lo, (pt - r).min(0)), np.maximum(hi, (pt + r).max(0))
    return lo, hi


def _background(rng, xs, ys):
    c1 = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.72, 0.95))
    c2 = np.clip(c1 * rng.uniform(0.6, 1.4) + rng.uniform(-0.08, 0.08, 3), 0, 1).astype(np.float32)
    kind = rng.choice(["plain", "gradient", "waves", "stripes"])
    if kind == "plain":
        m = np.zeros_like(xs)
    elif kind == "gradient":
        d = rng.uniform(0, 2 * np.pi)
        m = (np.cos(d) * (xs - 0.5) + np.sin(d) * (ys - 0.5)) / 1.42 + 0.5
    elif kind == "waves":
        m = np.zeros_like(xs)
        for _ in range(3):
            d, f, ph = rng.uniform(0, 2 * np.pi), rng.uniform(1, 4), rng.uniform(0, 2 * np.pi)
            m += np.sin(2 * np.pi * f * (np.cos(d) * xs + np.sin(d) * ys) + ph) / 3
        m = 0.5 + 0.5 * m
    else:
        d, f = rng.uniform(0, np.pi), rng.uniform(1.5, 4)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * f * (np.cos(d) * xs + np.sin(d) * ys))
    return (c1 * (1 - m[..., None]) + c2 * m[..., None]).astype(np.float32)


def _paint(texture, colours, u, v, extent):
    kind, wavelength, direction, phase = texture
    if kind == "solid":
        m = np.zeros_like(u)
    elif kind == "stripes":
        m = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(direction) * u + np.sin(direction) * v) / wavelength + phase)
    elif kind == "checker":
        m = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * u / wavelength + phase) * np.sin(2 * np.pi * v / wavelength))
    elif kind == "gradient":
        m = np.clip(u / extent, -1, 1) * 0.5 + 0.5
    else:  # spots
        m = np.clip(2 * np.cos(2 * np.pi * u / wavelength + phase) * np.cos(2 * np.pi * v / wavelength) - 0.6, 0, 1)
    c1, c2 = colours
    return c1 * (1 - m[..., None]) + c2 * m[..., None]


def _draw(p: _Part, index: int, q, th, scale, xs, ys, px, rim, image, cover, label):
    """Composite one part at pivot q (frame units) and angle th onto one frame, inside its bounding window."""
    if p.kind == "ellipse":
        a, b = p.size[0] * scale, p.size[1] * scale
        reach = max(a, b)
    else:
        length, radius, blob = (x * scale for x in p.size)
        reach = length + max(radius, blob)
    n = xs.shape[0]
    lo = np.clip(np.floor((q - reach) / px).astype(int) - 2, 0, n)
    hi = np.clip(np.ceil((q + reach) / px).astype(int) + 2, 0, n)
    win = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    c, s = np.float32(np.cos(th)), np.float32(np.sin(th))
    dx, dy = xs[win] - np.float32(q[0]), ys[win] - np.float32(q[1])
    u, v = c * dx + s * dy, -s * dx + c * dy  # part coordinates: u along the part
    if p.kind == "ellipse":
        k = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(k, 1e-6)
        dist = (k - 1) / np.maximum(grad, 1e-6)
        extent = a
    else:
        tt = np.clip(u, 0, length)
        dist = np.sqrt((u - tt) ** 2 + v**2) - radius
        if blob:
            dist = np.minimum(dist, np.sqrt((u - length) ** 2 + v**2) - blob)
        extent = length
    alpha = np.clip(0.5 - dist / px, 0, 1).astype(np.float32)
    colour = _paint(p.texture, p.colours, u, v, extent)
    colour = colour * (0.6 + 0.4 * np.clip(-dist / rim, 0, 1))[..., None]
    image[win] += alpha[..., None] * (colour - image[win])
    cover[win] += alpha * (1 - cover[win])
    label[win][alpha > 0.5] = index


def render_clip(rng: np.random.Generator, num_frames: int = 32, size: int = 64) -> Clip:
    """A random clip of one articulated figure (see module doc); all randomness from `rng`."""
    if num_frames < 1 or size < 16:
        raise ValueError(f"need num_frames >= 1 and size >= 16, got {num_frames}, {size}")
    parts = _sample_figure(rng)
    tau = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    margin = MARGIN_PX / size
    scale = rng.uniform(1.1, 1.5)
    for _ in range(40):  # shrink until the figure can travel MIN_TRAVEL inside the frame
        pos, ang = _poses(parts, scale, tau)
        lo, hi = _extent(parts, scale, pos, ang)
        room_lo, room_hi = margin - lo, 1 - margin - hi
        if np.all(room_hi - room_lo >= MIN_TRAVEL):
            break
        scale *= 0.92
    travel = np.stack(
        [0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 1.0) * tau + rng.uniform(0, 2 * np.pi)) for _ in range(2)], -1
    )
    centres = room_lo + (room_hi - room_lo) * travel  # (T, 2) in frame units, always inside the room

    n = size * SUPERSAMPLE
    grid = (np.arange(n, dtype=np.float32) + 0.5) / n
    xs, ys = np.meshgrid(grid, grid)
    image = np.broadcast_to(_background(rng, xs, ys), (num_frames, n, n, 3)).copy()
    cover = np.zeros((num_frames, n, n), np.float32)
    label = np.full((num_frames, n, n), -1, np.int8)
    px = 1.0 / n  # one subpixel in frame units
    rim = 1.5 / size
    order = sorted(range(len(parts)), key=lambda i: parts[i].layer)
    for t in range(num_frames):
        for index in order:
            _draw(
                parts[index],
                index,
                pos[index][t] + centres[t],
                ang[index][t],
                scale,
                xs,
                ys,
                px,
                rim,
                image[t],
                cover[t],
                label[t],
            )
    # box-filter the supersamples down to pixels
    f = SUPERSAMPLE
    image = sum(image[:, i::f, j::f] for i in range(f) for j in range(f)) / (f * f)
    cover = sum(cover[:, i::f, j::f] for i in range(f) for j in range(f)) / (f * f)
    label = label[:, f // 2 :: f, f // 2 :: f]
    joints = [pos[i] + centres for i, p in enumerate(parts) if p.parent >= 0]
    return Clip(
        frames=np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
        masks=cover.astype(np.float32),
        parts=label,
        joints=(np.stack(joints, 1) * size).astype(np.float32),
        angles=np.stack(ang, 1).astype(np.float32),
        centres=(centres * size).astype(np.float32),
    )


def make_clip(seed: int, split: str, index: int, num_frames: int = 32, size: int = 64) -> Clip:
    """Clip `index` of `split` of the synthetic dataset with this seed (what its builder stores)."""
    return render_clip(clip_rng(seed, split, index), num_frames, size)
