"""Convert the original's PyTorch checkpoints into our variables.

    python -m mraa_jax.convert --config configs/vox256.py --checkpoint vox.pth --output converted/vox256

Reads both torch file formats (legacy and zip), always with `torch.load(weights_only=True)`
(a file that needs arbitrary Python objects is refused), tensors saved on CUDA devices
included; maps every tensor by a mechanical rename (`down_blocks.0.conv.weight` ->
`down_blocks_0/conv/kernel`, a DataParallel `module.` prefix dropped) plus layout
transposes, checks every shape against the model the config builds, and writes a model
directory (see `mraa_jax.model_dir`). The Adam moments come along for fine-tuning where
they can; a checkpoint whose optimiser state does not fit converts with a warning, and
inference never reads it. torch is imported lazily: it is needed only here (pip extra
`convert`).
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mraa_jax import geometry
from mraa_jax.config import load_config
from mraa_jax.errors import CheckpointError, InputError
from mraa_jax.model import NETWORKS, build_networks, config_frame_shape, init_variables

# Buffers of the original that hold no state: num_batches_tracked is unused by
# eval and training; `down.weight` is the constant anti-alias kernel (checked, not loaded).
_DROPPED_LEAVES = ("num_batches_tracked",)
_ANTIALIAS_BUFFER = "down.weight"
# Parameters of the reconstruction optimiser, in the original's order.
RECONSTRUCTION_NETWORKS = ("generator", "region_predictor", "bg_predictor")
# The original's optimisers: checkpoint key -> the networks it optimises, in order.
OPTIMIZERS = {"optimizer_reconstruction": RECONSTRUCTION_NETWORKS, "optimizer_avd": ("avd_network",)}
# File names taken for the original's torch.save checkpoints.
ORIGINAL_SUFFIXES = (".pth", ".pt", ".tar")
# torch's (Distributed)DataParallel wraps a network as `module`, prefixing every name.
_DATA_PARALLEL_PREFIX = "module."


class ConversionError(CheckpointError):
    """A checkpoint cannot be read or does not fit the config; the message lists every mismatch."""


# -- the name map ------------------------------------------------------------


def torch_to_flax(name: str, ndim: int) -> tuple[str, tuple[str, ...]] | None:
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


def check_antialias_buffer(network: str, name: str, value: np.ndarray) -> str | None:
    """A message if a stored anti-alias kernel differs from the one we recompute, else None."""
    size = value.shape[-1]
    sigma = (size - 1) / 8.0  # k = 2 round(4 sigma) + 1 with sigma = (1/scale - 1)/2
    scale = 1.0 / (2 * sigma + 1) if sigma > 0 else 1.0
    expected = geometry.antialias_kernel(scale)
    if expected.shape != value.shape[-2:] or not np.allclose(value, expected[None, None], atol=1e-6):
        return (
            f"{network}.{name}: stored anti-alias kernel {value.shape} differs from the recomputed one {expected.shape}"
        )
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
            problems.append(
                f"mis-shaped: {network}.{name} is {tuple(value.shape)}, the config expects {flax_to_torch_shape(want)}"
            )
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


def strip_data_parallel_prefix(state_dict: dict) -> dict:
    """A state dict saved from inside torch's DataParallel (every name `module.`-prefixed) without the prefix."""
    if state_dict and all(isinstance(k, str) and k.startswith(_DATA_PARALLEL_PREFIX) for k in state_dict):
        return {k[len(_DATA_PARALLEL_PREFIX) :]: v for k, v in state_dict.items()}
    return state_dict


def convert_adam_state(
    optimizer: Any, networks: tuple[str, ...], state_dicts: dict, where: str = "optimizer"
) -> dict | None:
    """The original's Adam moments as {network: {'mu': tree, 'nu': tree}} plus 'step'; None if it has none.

    torch's `param_groups[*]['params']` give, in the order of the networks' parameters, the
    index under which `state` keeps each parameter's moments. Adam creates that entry at a
    parameter's first gradient, so a parameter that never had one has no entry: it starts
    from zero moments here, as in torch. `step` is the largest of the entries' steps (optax
    keeps one count for all parameters). Raises ConversionError naming `where` if the state
    does not fit the networks.
    """
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), (list, tuple)):
        raise ConversionError(f"{where}: not an optimizer state dict (expected 'state' and 'param_groups')")
    state = optimizer.get("state") or {}
    if not state:
        return None
    names = [(network, name) for network in networks for name in _parameter_names(state_dicts[network])]
    indices = [index for group in optimizer["param_groups"] for index in group.get("params", [])]
    if len(indices) != len(names):
        raise ConversionError(
            f"{where}: its param_groups list {len(indices)} parameters, the networks {networks} have {len(names)}"
        )
    strays = sorted(set(state) - set(indices), key=str)
    if strays:
        raise ConversionError(f"{where}: state entries {strays[:5]} belong to no parameter of param_groups")
    moments = {network: {"mu": {}, "nu": {}} for network in networks}
    steps = set()
    for index, (network, name) in zip(indices, names):
        parameter = np.asarray(state_dicts[network][name])
        _, path = torch_to_flax(name, parameter.ndim)
        entry = state.get(index)
        if entry is None:  # no gradient yet when the checkpoint was written
            zeros = torch_to_flax_layout(np.zeros(parameter.shape, np.float32))
            moments[network]["mu"][path], moments[network]["nu"][path] = zeros, zeros
            continue
        if not isinstance(entry, dict) or not {"exp_avg", "exp_avg_sq", "step"} <= set(entry):
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ConversionError(f"{where}: entry {index} ({network}.{name}) is not Adam's state (has {keys})")
        for key in ("exp_avg", "exp_avg_sq"):
            if np.shape(entry[key]) != parameter.shape:
                raise ConversionError(
                    f"{where}: entry {index} {key} is {np.shape(entry[key])}, its parameter {network}.{name} is {parameter.shape}"
                )
        moments[network]["mu"][path] = torch_to_flax_layout(np.asarray(entry["exp_avg"], np.float32))
        moments[network]["nu"][path] = torch_to_flax_layout(np.asarray(entry["exp_avg_sq"], np.float32))
        steps.add(int(np.asarray(entry["step"])))
    out: dict[str, Any] = {n: {k: _unflatten(v) for k, v in m.items()} for n, m in moments.items()}
    out["step"] = max(steps)
    return out


def _refusal(path: Path, error: Exception) -> str:
    """Why torch.load refused a file, in one line."""
    message = str(error)
    needed = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if needed:
        return (
            f"{path}: refused: loading it would run code from the file (it pickles {needed.group(1)}, not only "
            "tensors), and checkpoints are read with torch.load(weights_only=True) only; save a dict of state dicts "
            "instead (torch.save({'generator': generator.state_dict(), ...}))"
        )
    return f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {' '.join(message.split())[:200]})"


def read_torch_checkpoint(path: str | Path) -> dict:
    """The original's checkpoint dict with tensors as float32/int NumPy arrays (legacy or zip format).

    Always `torch.load(weights_only=True)`: tensors, dicts, lists and numbers only, on the CPU
    wherever they were saved. Raises ConversionError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path}: no such file")
    if path.stat().st_size == 0:
        raise ConversionError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reading original checkpoints needs PyTorch: pip install 'mraa-jax[convert]'") from error
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, RuntimeError, EOFError...)
        raise ConversionError(_refusal(path, error)) from None
    if not isinstance(raw, dict):
        raise ConversionError(
            f"{path}: expected a dict of state dicts (generator, region_predictor, ...), got {type(raw).__name__}"
        )

    def to_numpy(value):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            return (value.float() if value.is_floating_point() else value).numpy()  # half/bfloat16 files too
        if isinstance(value, dict):
            return {k: to_numpy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_numpy(v) for v in value)
        return value

    return to_numpy(raw)


def convert_checkpoint(
    checkpoint: dict, config, source: str = "checkpoint", optimizer: bool = True
) -> tuple[dict, dict, dict]:
    """(variables, optimizer_state, meta) from a read checkpoint and a config.

    Every network of the config must be in the checkpoint except `avd_network`
    (absent after the first stage: it is then randomly initialised, and meta's
    `random_init` says so). Raises ConversionError listing every mismatch.
    optimizer: also convert the Adam moments (for fine-tuning); an optimiser state that
    does not fit is left out with a warning (meta's `optimizer_warnings`), never an error.
    """
    networks = build_networks(config.model_params)
    frame_shape = config_frame_shape(config)
    expected = jax.eval_shape(lambda: init_variables(networks, jax.random.PRNGKey(0), frame_shape))
    state_dicts, problems, meta = {}, [], {"source": str(source), "random_init": []}
    for network in NETWORKS:
        if network not in checkpoint:
            if network == "avd_network":
                meta["random_init"].append(network)
                continue
            problems.append(f"missing: the whole `{network}` state dict")
        elif not isinstance(checkpoint[network], dict):
            problems.append(f"`{network}` is a {type(checkpoint[network]).__name__}, not a state dict")
        else:
            state_dicts[network] = strip_data_parallel_prefix(checkpoint[network])
    variables = {}
    for network, state_dict in state_dicts.items():
        variables[network], network_problems = convert_state_dict(network, state_dict, expected[network])
        problems += network_problems
    if problems:
        raise ConversionError(
            f"{source} does not fit the config ({len(problems)} problems):\n  " + "\n  ".join(problems)
        )
    if meta["random_init"]:
        fresh = init_variables(networks, jax.random.PRNGKey(0), frame_shape, meta["random_init"])
        for network in meta["random_init"]:
            variables[network] = jax.tree_util.tree_map(np.asarray, fresh[network])
    for network in NETWORKS:
        variables[network] = {"params": {}, "batch_stats": {}, **variables[network]}
    moments = _convert_optimizers(checkpoint, state_dicts, source, meta) if optimizer else {}
    for key in ("epoch_reconstruction", "epoch_avd"):
        if key in checkpoint:
            meta[key] = int(checkpoint[key])
    return variables, moments, meta


def _convert_optimizers(checkpoint: dict, state_dicts: dict, source: str, meta: dict) -> dict:
    """{'reconstruction': moments, 'avd': moments} of the optimisers that convert; a warning for each that does not."""
    moments = {}
    for key, networks in OPTIMIZERS.items():
        if key not in checkpoint or not all(n in state_dicts for n in networks):
            continue
        try:
            adam = convert_adam_state(checkpoint[key], networks, state_dicts, f"{source}: {key}")
        except ConversionError as error:
            message = f"{error}; left out: fine-tuning from it starts with fresh Adam moments"
            warnings.warn(message, stacklevel=3)
            meta.setdefault("optimizer_warnings", []).append(message)
            continue
        if adam:
            moments[key.removeprefix("optimizer_")] = adam
    return moments


def convert_file(path, config, optimizer: bool = True) -> tuple[dict, dict, dict]:
    """`convert_checkpoint` of the original checkpoint file at `path`."""
    return convert_checkpoint(read_torch_checkpoint(path), config, str(path), optimizer)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mraa_jax.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/<name>.py or the original's .yaml")
    parser.add_argument("--checkpoint", required=True, help="the original's .pth file")
    parser.add_argument("--output", required=True, help="directory to write (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument(
        "--skip_optimizer",
        action="store_true",
        help="weights only: do not read the Adam moments (inference needs none)",
    )
    args = parser.parse_args(argv)

    from mraa_jax.model_dir import save_model_dir

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        print(f"error: {output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    try:
        config = load_config(args.config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # printed below, once
            variables, optimizer, meta = convert_file(args.checkpoint, config, optimizer=not args.skip_optimizer)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_model_dir(output, config, variables, optimizer=optimizer, meta=meta, overwrite=args.overwrite)
    count = sum(x.size for x in jax.tree_util.tree_leaves(variables))
    print(f"converted {args.checkpoint} -> {output} ({count:,} values)")
    for message in meta.get("optimizer_warnings", []):
        print(f"warning: {message}", file=sys.stderr)
    if meta["random_init"]:
        print(f"note: not in the checkpoint, randomly initialised: {', '.join(meta['random_init'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
