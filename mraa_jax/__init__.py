"""mraa-jax: Motion Representations for Articulated Animation (CVPR 2021) in JAX/Flax.

import mraa_jax
model = mraa_jax.load("converted/vox256")            # or an original .pth with config=...
video = model.animate(image, frames, mode="relative")
"""

from __future__ import annotations

from pathlib import Path

from mraa_jax.errors import CheckpointError, ConfigError, InputError
from mraa_jax.model import MRAA
from mraa_jax.region_params import RegionParams

__all__ = ["MRAA", "CheckpointError", "ConfigError", "InputError", "RegionParams", "load"]


def load(path, config=None) -> MRAA:
    """A model for inference from a converted directory, or from an original .pth checkpoint plus its config.

    config: a ConfigDict, a configs/*.py file or the original's .yaml. Required for
    a .pth file; for a directory it overrides the stored config.yaml. The optimiser
    state of a checkpoint is never read. Bad input raises `InputError` naming the file.
    """
    from mraa_jax import model_dir
    from mraa_jax.config import load_config

    path = Path(path)
    if path.is_dir():
        cfg = load_config(config) if config is not None else model_dir.load_model_config(path)
        variables = model_dir.load_variables(path)
        return MRAA(cfg, variables, untrained=model_dir.load_meta(path).get("random_init", []), source=str(path))
    from mraa_jax.convert import ORIGINAL_SUFFIXES, convert_file

    if path.suffix in ORIGINAL_SUFFIXES:
        if config is None:
            raise CheckpointError(
                f"{path}: an original checkpoint needs its config (config=configs/<name>.py or the original .yaml)"
            )
        cfg = load_config(config)
        variables, _, meta = convert_file(path, cfg, optimizer=False)
        return MRAA(cfg, variables, untrained=meta["random_init"], source=str(path))
    if not path.exists():
        raise CheckpointError(f"no model at {path}: no such file or directory")
    raise CheckpointError(
        f"{path}: expected a converted model directory or an original {'/'.join(ORIGINAL_SUFFIXES)} checkpoint"
    )
