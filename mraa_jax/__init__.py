"""mraa-jax: Motion Representations for Articulated Animation (CVPR 2021) in JAX/Flax.

    import mraa_jax
    model = mraa_jax.load("converted/vox256")            # or an original .pth with config=...
    video = model.animate(image, frames, mode="relative")
"""
from __future__ import annotations

from pathlib import Path

from mraa_jax import host_memory
from mraa_jax.model import MRAA
from mraa_jax.region_params import RegionParams

host_memory.release_memory_around_compiling()

__all__ = ["MRAA", "RegionParams", "load"]


def load(path, config=None) -> MRAA:
    """A model from a converted directory, or from an original .pth checkpoint plus its config.

    config: a ConfigDict, a configs/*.py file or the original's .yaml. Required for
    a .pth file; for a directory it overrides the stored config.yaml.
    """
    from mraa_jax import model_dir
    from mraa_jax.config import load_config

    path = Path(path)
    if path.is_dir():
        if not model_dir.is_model_dir(path):
            raise FileNotFoundError(f"{path} is not a model directory (expected config.yaml and variables/ inside)")
        cfg = load_config(config) if config is not None else model_dir.load_model_config(path)
        return MRAA(cfg, model_dir.load_variables(path))
    if path.suffix in (".pth", ".pt", ".tar"):
        if config is None:
            raise ValueError(f"{path}: an original checkpoint needs its config (config=configs/<name>.py or the original .yaml)")
        from mraa_jax.convert import convert_checkpoint, read_torch_checkpoint

        cfg = load_config(config)
        variables, _, _ = convert_checkpoint(read_torch_checkpoint(path), cfg, str(path))
        return MRAA(cfg, variables)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    raise ValueError(f"{path}: expected a converted model directory or an original .pth checkpoint")
