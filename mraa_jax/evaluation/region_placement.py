"""Do a model's regions find the parts? Region centres against the synthetic figures' part labels.

The paper shows part discovery by eye. On the built-in synthetic dataset it can be measured:
every clip is re-rendered from (seed, split, index) with the part each pixel shows
(`figures.Clip.parts`: -1 background, 0 body, 1.. limbs).

    clips = [figures.make_clip(0, "test", i) for i in range(50)]
    region_placement(model, clips)
    # {"centres_on_figure": 0.96, "centres_on_limbs": 0.66, "limb_coverage": 0.73,
    #  "centre_spread_px": 7.1, "figure_spread_px": 15.1, "frames": 400}   (the main job's model)

centres_on_figure / centres_on_limbs: the share of region centres on a pixel of the figure / of
a limb. limb_coverage: per frame, the share of visible limbs that hold at least one centre.
centre_spread_px: per frame, the RMS distance of the centres from their mean; figure_spread_px
is the same for the figure's pixels. Regions that share out the figure spread about as much as
it does; regions that all sit on one point (each moving the whole figure) spread about 0.
"""

from __future__ import annotations

import numpy as np


def _rms_spread(points: np.ndarray) -> float:
    """RMS distance of (N, 2) points from their mean."""
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(-1).mean()))


def placement_scores(centres_px: np.ndarray, parts: np.ndarray) -> dict:
    """Scores of region centres (T, K, 2) in pixels (x, y) on part labels (T, S, S)."""
    if centres_px.ndim != 3 or parts.ndim != 3 or centres_px.shape[0] != parts.shape[0]:
        raise ValueError(
            f"need centres (T, K, 2) and parts (T, S, S) of the same T, got {centres_px.shape} and {parts.shape}"
        )
    height, width = parts.shape[1:]
    columns = np.clip(np.round(centres_px[..., 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(centres_px[..., 1]).astype(int), 0, height - 1)
    hits = parts[np.arange(len(parts))[:, None], rows, columns]  # (T, K): the part under each centre
    coverage, centre_spread, figure_spread = [], [], []
    for labels, hit, centres in zip(parts, hits, centres_px):
        limbs = set(np.unique(labels[labels >= 1]).tolist())
        if limbs:
            coverage.append(len(limbs & set(hit.tolist())) / len(limbs))
        centre_spread.append(_rms_spread(centres))
        figure = np.argwhere(labels >= 0)[:, ::-1].astype(np.float64)  # (x, y) of the figure's pixels
        if len(figure):
            figure_spread.append(_rms_spread(figure))
    return {
        "centres_on_figure": float((hits >= 0).mean()),
        "centres_on_limbs": float((hits >= 1).mean()),
        "limb_coverage": float(np.mean(coverage)) if coverage else None,  # None: no limb in view
        "centre_spread_px": float(np.mean(centre_spread)),
        "figure_spread_px": float(np.mean(figure_spread)) if figure_spread else None,  # None: no figure in view
        "frames": int(len(parts)),
    }


def region_placement(model, clips, frame_step: int = 4) -> dict:
    """placement_scores over every `frame_step`-th frame of synthetic clips (figures.Clip)."""
    centres, parts = [], []
    for clip in clips:
        frames = clip.frames[::frame_step].astype(np.float32) / 255
        size = np.array(frames.shape[2:0:-1], np.float64)  # (width, height)
        shift = np.asarray(
            model.regions(frames).shift, np.float64
        )  # (T, K, 2), (x, y) in [-1, 1] at the outer pixel centres
        centres.append((shift + 1) / 2 * (size - 1))
        parts.append(clip.parts[::frame_step])
    return placement_scores(np.concatenate(centres), np.concatenate(parts))
