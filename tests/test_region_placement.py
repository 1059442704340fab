"""Region placement on the synthetic figures: centres put on known part pixels score what they should."""

import numpy as np
import pytest

from mraa_jax.data import figures
from mraa_jax.evaluation.region_placement import placement_scores, region_placement
from mraa_jax.region_params import RegionParams


@pytest.fixture(scope="module")
def clip():
    return figures.make_clip(0, "test", 3, num_frames=4, size=32)


def pixel_of(labels: np.ndarray, part: int) -> np.ndarray:
    """(x, y) of one pixel that shows `part`."""
    y, x = np.argwhere(labels == part)[0]
    return np.array([x, y], np.float64)


def test_one_centre_per_part_covers_every_limb(clip):
    centres = []
    for labels in clip.parts:
        visible = sorted(set(np.unique(labels).tolist()) - {-1})
        centres.append([pixel_of(labels, part) for part in visible])
    assert len({len(c) for c in centres}) == 1, "test clip 3 should show every limb in every frame"
    scores = placement_scores(np.array(centres), clip.parts)
    assert scores["centres_on_figure"] == 1.0
    assert scores["centres_on_limbs"] == pytest.approx((len(centres[0]) - 1) / len(centres[0]))
    assert scores["limb_coverage"] == 1.0
    assert scores["centre_spread_px"] > 2.0 and scores["figure_spread_px"] > 2.0


def test_centres_on_one_point_spread_zero_and_miss_the_limbs(clip):
    body = np.array([[pixel_of(labels, 0)] * 5 for labels in clip.parts])
    scores = placement_scores(body, clip.parts)
    assert scores["centres_on_figure"] == 1.0 and scores["centres_on_limbs"] == 0.0
    assert scores["limb_coverage"] == 0.0 and scores["centre_spread_px"] == 0.0
    background = np.array([[pixel_of(labels, -1)] * 5 for labels in clip.parts])
    assert placement_scores(background, clip.parts)["centres_on_figure"] == 0.0


def test_region_placement_maps_model_coordinates_to_pixels(clip):
    """A model whose regions sit on a limb pixel, in [-1, 1] coordinates, scores as that pixel does."""
    targets = np.array([pixel_of(labels, 1) for labels in clip.parts])  # (T, 2) a pixel of limb 1 per frame
    size = clip.parts.shape[1]

    class LimbModel:
        def regions(self, frames):
            assert frames.shape == clip.frames.shape and frames.dtype == np.float32
            return RegionParams(shift=np.repeat((targets / (size - 1) * 2 - 1)[:, None], 3, axis=1))

    scores = region_placement(LimbModel(), [clip], frame_step=1)
    assert scores["centres_on_limbs"] == 1.0 and scores["frames"] == len(clip.frames)


def test_placement_scores_checks_shapes(clip):
    with pytest.raises(ValueError, match="same T"):
        placement_scores(np.zeros((2, 3, 2)), clip.parts)
