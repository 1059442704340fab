"""Region params for animation, as the original's demo computes them: standard, relative and AVD modes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import ConvexHull, QhullError

from mraa_jax.errors import InputError
from mraa_jax.geometry import inverse_2x2
from mraa_jax.region_params import RegionParams

MODES = ("standard", "relative", "avd")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InputError(f"animation mode must be one of {', '.join(MODES)}, got {mode!r}")


def movement_scale(source_shift, initial_shift) -> float:
    """sqrt(area of the convex hull of the source centres / that of the first driving frame's).

    Arguments are (K, 2) centres of one image each. Computed on the host once per
    animation, with the same Qhull the original uses.
    """
    try:
        source_area = ConvexHull(np.asarray(source_shift, np.float64)).volume
        driving_area = ConvexHull(np.asarray(initial_shift, np.float64)).volume
    except QhullError as error:
        raise ValueError(
            "relative animation needs region centres that span an area (at least 3 regions, not collinear); "
            f"the convex hull failed: {error}"
        ) from error
    return float(np.sqrt(source_area) / np.sqrt(driving_area))


def relative_params(source: RegionParams, driving: RegionParams, initial: RegionParams, scale) -> RegionParams:
    """Driving motion relative to the first driving frame, applied to the source regions.

    shift = (drv - initial) * scale + src; affine = (A_drv A_initial^-1) A_src.
    covar is left as the driving frame's, as the original does.
    """
    shift = (driving.shift - initial.shift) * scale + source.shift
    affine = driving.affine @ inverse_2x2(initial.affine) @ source.affine
    return RegionParams(shift=shift, covar=driving.covar, affine=affine)


def animation_params(
    mode: str, source: RegionParams, driving: RegionParams, initial: RegionParams, scale, avd_fn=None
) -> RegionParams:
    """What the generator receives for each driving frame in `mode` (heatmaps dropped).

    `source` and `initial` may have batch 1; they broadcast against `driving`.
    `avd_fn(source, driving)` is the AVD network, needed in 'avd' mode.
    """
    check_mode(mode)
    batch = driving.shift.shape[0]
    source = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape[1:]), source.without_heatmap())
    if mode == "standard":
        return driving.without_heatmap()
    if mode == "relative":
        return relative_params(source, driving, initial, scale)
    return avd_fn(source, driving)
