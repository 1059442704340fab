"""Convert the original's PyTorch checkpoints into our variables (spec section 12).

    python -m mraa_jax.convert --config configs/vox256.py --checkpoint vox.pth --output converted/vox256

Reads both torch file formats (legacy and zip), maps every tensor by a mechanical
rename (`down_blocks.0.conv.weight` -> `down_blocks_0/conv/kernel`) plus layout
transposes, checks every shape against the model the config builds, and writes
a model directory (see `mraa_jax.model_dir`). torch is imported lazily: it is
needed only here (pip extra `convert`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

from mraa_jax import geometry
from mraa_jax.config import load_config
from mraa_jax.model import NETWORKS, build_networks, config_frame_shape, init_variables

# Buffers of the original that hold no state: num_batches_tracked is unused by
# eval and training; `down.weight` is the constant anti-alias kernel (checked, not loaded).
_DROPPED_LEAVES = ("num_batches_tracked",)
_ANTIALIAS_BUFFER = "down.weight"
# Parameters of the reconstruction optimiser, in the original's order.
RECONSTRUCTION_NETWORKS = ("generator", "region_predictor", "bg_predictor")


class ConversionError(ValueError):
    """A checkpoint does not fit the config; the message lists every mismatch."""


# -- the name map ------------------------------------------------------------


def torch_to_flax(name: str, ndim: int) -> Optional[tuple[str, tuple[str, ...]]]:
    """(collection, path) of a torch state-dict name in our variables; None for dropped buffers.

    Numeric components join the previous one ('down_blocks.0' -> 'down_blocks_0');
    'weight' is a kernel for conv/linear (ndim 4/2) and a BatchNorm scale (ndim 1).
    """
    *modules, leaf = name.split(".")
    if leaf in _DROPPED_LEAVES or name.endswith(_ANTIALIAS_BUFFER):
        return None
    path: list[str] = []
    for part in modules:
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    if leaf == "weight":
        return "params", tuple(path) + ("kernel" if ndim in (2, 4) else "scale",)
    if leaf == "bias":
        return "params", tuple(path) + ("bias",)
    if leaf == "running_mean":
        return "batch_stats", tuple(path) + ("mean",)
    if leaf == "running_var":
        return "batch_stats", tuple(path) + ("var",)
    raise ConversionError(f"{name}: unknown kind of tensor {leaf!r}")


def flax_to_torch(collection: str, path: tuple[str, ...]) -> str:
    """Inverse of `torch_to_flax`: the original's state-dict name of one of our leaves."""
    *modules, leaf = path
    parts = []
    for part in modules:
        head, _, tail = part.rpartition("_")
        parts.extend([head, tail] if head and tail.isdigit() else [part])
    leaf_names = {
        ("params", "kernel"): "weight",
        ("params", "scale"): "weight",
        ("params", "bias"): "bias",
        ("batch_stats", "mean"): "running_mean",
        ("batch_stats", "var"): "running_var",
    }
    return ".".join(parts + [leaf_names[(collection, leaf)]])


def torch_to_flax_layout(array: np.ndarray) -> np.ndarray:
    """conv (O, I, kh, kw) -> (kh, kw, I, O); linear (O, I) -> (I, O); others unchanged."""
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:
        return np.transpose(array, (1, 0))
    return array


def flax_to_torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The original's shape of one of our leaves."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:
        return (shape[1], shape[0])
    return tuple(shape)


def flat_leaves(variables: dict) -> dict[tuple[str, tuple[str, ...]], Any]:
    """{(collection, path): leaf} of one network's {'params': ..., 'batch_stats': ...}."""
    out = {}
    for collection, tree in variables.items():
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            out[(collection, tuple(k.key for k in key_path))] = leaf
    return out


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


# -- converting state dicts ----------------------------------------------------


def check_antialias_buffer(network: str, name: str, value: np.ndarray) -> Optional[str]:
    """A message if a stored anti-alias kernel differs from the one we recompute, else None."""
    size = value.shape[-1]
    sigma = (size - 1) / 8.0  # k = 2 round(4 sigma) + 1 with sigma = (1/scale - 1)/2
    scale = 1.0 / (2 * sigma + 1) if sigma > 0 else 1.0
    expected = geometry.antialias_kernel(scale)
    if expected.shape != value.shape[-2:] or not np.allclose(value, expected[None, None], atol=1e-6):
        return f"{network}.{name}: stored anti-alias kernel {value.shape} differs from the recomputed one {expected.shape}"
    return None


def convert_state_dict(network: str, state_dict: dict[str, np.ndarray], expected: dict) -> tuple[dict, list[str]]:
    """Map one network's torch state dict onto the structure of `expected` (its abstract variables).

    Returns (variables, problems): problems name every missing, unexpected and
    mis-shaped tensor, with both layouts' shapes.
    """
    expected_leaves = flat_leaves(expected)
    found: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
    seen = set()
    problems = []
    for name, value in state_dict.items():
        value = np.asarray(value)
        if name.endswith(_ANTIALIAS_BUFFER):
            message = check_antialias_buffer(network, name, value)
            if message:
                problems.append(message)
            continue
        try:
            key = torch_to_flax(name, value.ndim)
        except ConversionError:
            key = ("unknown", (name,))
        if key is None:
            continue
        if key not in expected_leaves:
            problems.append(f"unexpected: {network}.{name} {tuple(value.shape)}")
            continue
        seen.add(key)
        converted = torch_to_flax_layout(value)
        want = tuple(expected_leaves[key].shape)
        if converted.shape != want:
            problems.append(f"mis-shaped: {network}.{name} is {tuple(value.shape)}, the config expects {flax_to_torch_shape(want)}")
            continue
        found[key] = converted.astype(np.float32)
    for key, leaf in expected_leaves.items():
        if key not in seen:
            problems.append(f"missing: {network}.{flax_to_torch(*key)} {flax_to_torch_shape(tuple(leaf.shape))}")
    by_collection: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for (collection, path), value in found.items():
        by_collection[collection][path] = value
    return {c: _unflatten(v) for c, v in by_collection.items()}, problems


def _parameter_names(state_dict: dict[str, np.ndarray]) -> list[str]:
    """Names of trainable parameters in the original's `parameters()` order (buffers removed)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return [n for n in state_dict if not n.endswith(buffers) and not n.endswith(_ANTIALIAS_BUFFER)]


def convert_adam_state(optimizer: dict, networks: tuple[str, ...], state_dicts: dict) -> Optional[dict]:
    """The original's Adam moments as {network: {'mu': tree, 'nu': tree}} plus 'step'; None if it has none.

    torch keys the state by parameter index over the optimised networks in order.
    """
    state = optimizer.get("state") or {}
    if not state:
        return None
    names = [(network, name) for network in networks for name in _parameter_names(state_dicts[network])]
    if len(names) != len(state):
        raise ConversionError(f"optimizer state has {len(state)} entries, the networks {networks} have {len(names)} parameters")
    moments = {network: {"mu": {}, "nu": {}} for network in networks}
    steps = set()
    for index, (network, name) in enumerate(names):
        entry = state[index]
        _, path = torch_to_flax(name, np.asarray(entry["exp_avg"]).ndim)
        moments[network]["mu"][path] = torch_to_flax_layout(np.asarray(entry["exp_avg"], np.float32))
        moments[network]["nu"][path] = torch_to_flax_layout(np.asarray(entry["exp_avg_sq"], np.float32))
        steps.add(int(np.asarray(entry["step"])))
    out: dict[str, Any] = {n: {k: _unflatten(v) for k, v in m.items()} for n, m in moments.items()}
    out["step"] = max(steps)
    return out


def read_torch_checkpoint(path: str | Path) -> dict:
    """The original's checkpoint dict with tensors as NumPy arrays (legacy or zip format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading original checkpoints needs PyTorch: pip install 'mraa-jax[convert]'") from error
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(raw, dict):
        raise ConversionError(f"{path}: expected a dict of state dicts, got {type(raw).__name__}")

    def to_numpy(value):
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        if isinstance(value, dict):
            return {k: to_numpy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_numpy(v) for v in value)
        return value

    return to_numpy(raw)


def convert_checkpoint(checkpoint: dict, config, source: str = "checkpoint") -> tuple[dict, dict, dict]:
    """(variables, optimizer_state, meta) from a read checkpoint and a config.

    Every network of the config must be in the checkpoint except `avd_network`
    (absent after the first stage: it is then randomly initialised, and meta says so).
    Raises ConversionError listing every mismatch.
    """
    networks = build_networks(config.model_params)
    frame_shape = config_frame_shape(config)
    expected = jax.eval_shape(lambda: init_variables(networks, jax.random.PRNGKey(0), frame_shape))
    variables, problems, meta = {}, [], {"source": str(source), "random_init": []}
    for network in NETWORKS:
        if network not in checkpoint:
            if network == "avd_network":
                meta["random_init"].append(network)
                continue
            problems.append(f"missing: the whole `{network}` state dict")
            continue
        variables[network], network_problems = convert_state_dict(network, checkpoint[network], expected[network])
        problems += network_problems
    if problems:
        raise ConversionError(f"{source} does not fit the config ({len(problems)} problems):\n  " + "\n  ".join(problems))
    if meta["random_init"]:
        fresh = init_variables(networks, jax.random.PRNGKey(0), frame_shape, meta["random_init"])
        for network in meta["random_init"]:
            variables[network] = jax.tree_util.tree_map(np.asarray, fresh[network])
    for network in NETWORKS:
        variables[network] = {"params": {}, "batch_stats": {}, **variables[network]}
    optimizer = {}
    if "optimizer_reconstruction" in checkpoint:
        adam = convert_adam_state(checkpoint["optimizer_reconstruction"], RECONSTRUCTION_NETWORKS, checkpoint)
        if adam:
            optimizer["reconstruction"] = adam
    if "optimizer_avd" in checkpoint and "avd_network" in checkpoint:
        adam = convert_adam_state(checkpoint["optimizer_avd"], ("avd_network",), checkpoint)
        if adam:
            optimizer["avd"] = adam
    for key in ("epoch_reconstruction", "epoch_avd"):
        if key in checkpoint:
            meta[key] = int(checkpoint[key])
    return variables, optimizer, meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mraa_jax.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/<name>.py or the original's .yaml")
    parser.add_argument("--checkpoint", required=True, help="the original's .pth file")
    parser.add_argument("--output", required=True, help="directory to write (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)

    from mraa_jax.model_dir import save_model_dir

    config = load_config(args.config)
    try:
        variables, optimizer, meta = convert_checkpoint(read_torch_checkpoint(args.checkpoint), config, args.checkpoint)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_model_dir(args.output, config, variables, optimizer=optimizer, meta=meta, overwrite=args.overwrite)
    count = sum(x.size for x in jax.tree_util.tree_leaves(variables))
    print(f"converted {args.checkpoint} -> {args.output} ({count:,} values)")
    if meta["random_init"]:
        print(f"note: not in the checkpoint, randomly initialised: {', '.join(meta['random_init'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
