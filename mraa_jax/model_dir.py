"""A model directory: the config and the variables of a model, written atomically.

<dir>/config.yaml     the ConfigDict (readable by `mraa_jax.config.load_config`)
<dir>/variables/      orbax checkpoint {network: {'params', 'batch_stats'}}
<dir>/optimizer/      orbax checkpoint of the original's Adam moments, when converted with them
<dir>/meta.json       where it came from, epochs, networks that were randomly initialised
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from mraa_jax.config import load_config, save_config
from mraa_jax.errors import CheckpointError
from mraa_jax.model import NETWORKS

CONFIG_FILE = "config.yaml"
VARIABLES_DIR = "variables"
OPTIMIZER_DIR = "optimizer"
META_FILE = "meta.json"


def save_model_dir(
    path, config, variables: dict, optimizer: dict | None = None, meta: dict | None = None, overwrite: bool = False
) -> Path:
    """Write a model directory; it appears whole or not at all (written beside, then renamed)."""
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_config(config, staging / CONFIG_FILE)
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / VARIABLES_DIR, jax.tree_util.tree_map(np.asarray, variables))
        if optimizer:
            checkpointer.save(staging / OPTIMIZER_DIR, jax.tree_util.tree_map(np.asarray, optimizer))
        checkpointer.wait_until_finished()
        (staging / META_FILE).write_text(json.dumps(meta or {}, indent=2))
        _swap_in(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _swap_in(staging: Path, path: Path) -> None:
    """Move `staging` to `path`, an existing `path` renamed aside first and deleted only after:
    killed at any moment, one of the two complete directories is left at `path` or beside it."""
    if not path.exists():
        os.replace(staging, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
    os.replace(path, old / path.name)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def is_model_dir(path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / VARIABLES_DIR).is_dir()


def _require_model_dir(path: Path) -> None:
    if not is_model_dir(path):
        raise CheckpointError(f"{path} is not a model directory (expected {CONFIG_FILE} and {VARIABLES_DIR}/ inside)")


def _restore(directory: Path) -> dict:
    try:
        return ocp.StandardCheckpointer().restore(directory)
    except Exception as error:  # orbax and tensorstore raise many kinds for damaged files
        raise CheckpointError(
            f"{directory}: not a readable checkpoint ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
        ) from None


def load_variables(path) -> dict:
    """The variables of a model directory, as NumPy arrays."""
    path = Path(path).absolute()
    _require_model_dir(path)
    variables = _restore(path / VARIABLES_DIR)
    missing = [n for n in NETWORKS if n not in variables]
    if missing:
        raise CheckpointError(f"{path / VARIABLES_DIR}: missing networks {missing}")
    # orbax drops empty dicts (e.g. no batch_stats for a 'zero' background): restore them.
    return {n: {"params": {}, "batch_stats": {}, **variables[n]} for n in NETWORKS}


def load_optimizer(path) -> dict | None:
    """The converted optimiser moments of a model directory, or None if it has none."""
    directory = Path(path).absolute() / OPTIMIZER_DIR
    return _restore(directory) if directory.is_dir() else None


def load_meta(path) -> dict:
    meta_file = Path(path) / META_FILE
    if not meta_file.is_file():
        return {}
    try:
        return json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_file}: not valid JSON ({error})") from None


def load_model_config(path):
    _require_model_dir(Path(path))
    return load_config(Path(path) / CONFIG_FILE)
