"""Picture grids of what the model sees and makes (the original's visualiser), as uint8 NumPy images.

Columns: source with region centres, transformed frame (training only), driving
with region centres, deformed source, prediction, occlusion map, driving and
source heatmaps coloured by region (gist_rainbow). One row per batch element.
"""

from __future__ import annotations

import numpy as np

# matplotlib's gist_rainbow segment table: (position, (r, g, b)).
_GIST_RAINBOW = (
    (0.000, (1.00, 0.00, 0.16)),
    (0.030, (1.00, 0.00, 0.00)),
    (0.215, (1.00, 1.00, 0.00)),
    (0.400, (0.00, 1.00, 0.00)),
    (0.586, (0.00, 1.00, 1.00)),
    (0.770, (0.00, 0.00, 1.00)),
    (0.954, (1.00, 0.00, 1.00)),
    (1.000, (1.00, 0.00, 0.75)),
)


def region_colors(num_regions: int) -> np.ndarray:
    """(K, 3) colours in [0, 1], spread over gist_rainbow."""
    positions = np.linspace(0, 1, num_regions) if num_regions > 1 else np.zeros(1)
    stops = np.array([p for p, _ in _GIST_RAINBOW])
    colors = np.array([c for _, c in _GIST_RAINBOW])
    return np.stack([np.interp(positions, stops, colors[:, i]) for i in range(3)], axis=-1)


def draw_centres(image: np.ndarray, shift: np.ndarray, radius: int = 2) -> np.ndarray:
    """Copy of (H, W, 3) `image` with a disc of each region's colour at its centre (shift (K, 2) in [-1, 1])."""
    out = image.copy()
    h, w = image.shape[:2]
    rows, cols = np.mgrid[:h, :w]
    for (x, y), color in zip(shift, region_colors(len(shift))):
        cx, cy = (x + 1) / 2 * (w - 1), (y + 1) / 2 * (h - 1)
        out[(cols - cx) ** 2 + (rows - cy) ** 2 <= radius**2] = color
    return out


def _resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] / height).astype(int)
    cols = (np.arange(width) * image.shape[1] / width).astype(int)
    return image[rows][:, cols]


def colour_heatmap(heatmap: np.ndarray, height: int, width: int, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(h, w, K) heatmap as an (height, width, 3) picture: each region in its colour over `background`."""
    normed = heatmap / np.maximum(heatmap.max(axis=(0, 1), keepdims=True), 1e-12)
    coloured = normed @ region_colors(heatmap.shape[-1])
    weight = np.clip(normed.sum(-1, keepdims=True), 0, 1)
    picture = np.clip(coloured, 0, 1) + (1 - weight) * np.asarray(background)
    return _resize_nearest(np.clip(picture, 0, 1), height, width)


def visualize(
    source: np.ndarray,
    driving: np.ndarray,
    prediction: np.ndarray,
    source_params=None,
    driving_params=None,
    deformed: np.ndarray | None = None,
    occlusion_map: np.ndarray | None = None,
    transformed_frame: np.ndarray | None = None,
    kp_size: int = 2,
    max_rows: int = 8,
) -> np.ndarray:
    """A (rows*H, columns*W, 3) uint8 grid; inputs are (B, H, W, C) batches in [0, 1], params RegionParams."""
    batch, height, width = np.asarray(source).shape[:3]
    rows = []
    for b in range(min(batch, max_rows)):
        columns: list[np.ndarray] = []
        columns.append(_with_centres(source[b], source_params, b, kp_size))
        if transformed_frame is not None:
            columns.append(np.asarray(transformed_frame[b]))
        columns.append(_with_centres(driving[b], driving_params, b, kp_size))
        if deformed is not None:
            columns.append(np.asarray(deformed[b]))
        columns.append(np.asarray(prediction[b]))
        if occlusion_map is not None:
            occlusion = _resize_nearest(np.asarray(occlusion_map[b]), height, width)
            columns.append(np.repeat(occlusion, 3, axis=-1))
        for params in (driving_params, source_params):
            if params is not None and params.heatmap is not None:
                columns.append(colour_heatmap(np.asarray(params.heatmap[b]), height, width))
        rows.append(np.concatenate([_rgb(c) for c in columns], axis=1))
    return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)


def _with_centres(image, params, index: int, kp_size: int) -> np.ndarray:
    image = _rgb(np.asarray(image))
    if params is None:
        return image
    return draw_centres(image, np.asarray(params.shift[index]), kp_size)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
