"""Configuration: one `ml_collections.ConfigDict` schema shared by YAML and Python configs.

The ConfigDict mirrors the original's YAML files (snap-research/articulated-animation,
`config/*.yaml`) key for key, so that a published YAML file and the matching
`configs/<name>.py` load to equal ConfigDicts. Top-level sections:

    dataset_params, model_params, train_params, train_avd_params,
    reconstruction_params, animate_params, visualizer_params

SCHEMA declares every field that the library reads, with its default: the defaults
of the original's module constructors (model_params) and scripts, and our own fields.
After loading, a config is complete, so that no code outside this module needs to know
a default. Fields the original accepts and this library ignores (IGNORED) are kept as
given and named in one warning when a file is loaded. Lists are stored as tuples, so
that config_flags can override them: `--config.train_params.scales='(1, 0.5)'`.

Public API:
    fill_defaults(cfg) -> ConfigDict         defaults merged in (input left untouched)
    validate_config(cfg) -> None             raises ConfigError (an InputError) naming the bad field
    report_ignored(cfg, source) -> None      one warning naming the IGNORED fields cfg holds
    config_from_dict(d) -> ConfigDict        normalise + fill + validate (configs/*.py use it)
    config_from_yaml(path) -> ConfigDict     an original-format YAML file
    load_config(spec) -> ConfigDict          a ConfigDict, a configs/*.py path or a YAML path
    save_config(cfg, path) -> None           YAML that config_from_yaml reads back equal
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections
import yaml
from ml_collections import config_dict

from mraa_jax.errors import ConfigError

BG_TYPES = ("zero", "shift", "affine", "perspective")
COMPUTE_DTYPES = ("float32", "bfloat16")
ANIMATE_MODES = ("standard", "relative", "avd")
SECTIONS = (
    "dataset_params",
    "model_params",
    "train_params",
    "train_avd_params",
    "reconstruction_params",
    "animate_params",
    "visualizer_params",
)

# A key mapped to REQUIRED has no default. In model_params the original's constructors take
# it positionally; in the training sections a stage cannot run without it (num_epochs, lr...).
REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Unset:
    """A field that is None unless given, whose values have type `kind`.

    Stored as an ml_collections placeholder of that type, so that `--config.<field>=...`
    can set it (config_flags refuses to override a plain None).
    """

    kind: type


@dataclasses.dataclass(frozen=True)
class Group:
    """A nested mapping: `absent` is used when the key is missing; a given mapping has its
    missing keys filled from the schema `given` (what the original's code does with a partial
    mapping: a missing term is off), or is kept as it is when `given` is None."""

    absent: dict
    given: dict | None


# model_params defaults, from the constructors of the original's modules
# (RegionPredictor, BGMotionPredictor, Generator, PixelwiseFlowPredictor, AVDNetwork).
MODEL_DEFAULTS = {
    "num_regions": REQUIRED,
    # Ours, not the original's: the dtype the networks' convolutions and matmuls compute in
    # ("bfloat16" for speed on GPUs); parameters, region parameters and losses stay float32.
    "compute_dtype": "float32",
    "num_channels": 3,
    "estimate_affine": False,
    "revert_axis_swap": True,
    "bg_predictor_params": {
        "block_expansion": REQUIRED,
        "max_features": REQUIRED,
        "num_blocks": REQUIRED,
        "bg_type": "zero",
    },
    "region_predictor_params": {
        "temperature": REQUIRED,
        "block_expansion": REQUIRED,
        "max_features": REQUIRED,
        "scale_factor": 1,
        "num_blocks": 3,
        "pca_based": False,
        "pad": 3,
    },
    "generator_params": {
        "block_expansion": REQUIRED,
        "max_features": REQUIRED,
        "num_down_blocks": REQUIRED,
        "num_bottleneck_blocks": REQUIRED,
        "skips": False,
        "pixelwise_flow_predictor_params": {
            "block_expansion": REQUIRED,
            "max_features": REQUIRED,
            "num_blocks": REQUIRED,
            "scale_factor": 1,
            "region_var": 0.01,
            "use_covar_heatmap": False,
            "use_deformed_source": True,
            "estimate_occlusion_map": False,
        },
    },
    # The original's scripts never pass revert_axis_swap to AVDNetwork, so its
    # constructor default (True) is what every published model ran with.
    "avd_network_params": {
        "id_bottle_size": 64,
        "pose_bottle_size": 64,
        "revert_axis_swap": True,
    },
}


def _stage_defaults() -> dict:
    """Fields both training stages read: the original's epochs and ours (checkpoints, logs, NaN guard)."""
    return {
        "num_epochs": REQUIRED,
        "num_repeats": 1,  # DatasetRepeater's default
        "epoch_milestones": REQUIRED,
        "lr": REQUIRED,
        "batch_size": REQUIRED,
        "checkpoint_every_steps": 1000,  # ours: steps between checkpoints
        "keep_checkpoints": 3,  # ours: checkpoints kept
        "skip_nonfinite_steps": 0,  # ours: updates with a non-finite loss skipped in a row before stopping
        "log_every_steps": 100,  # ours: steps between logged losses
    }


# Defaults of the other sections: what the original's scripts and classes fall back to
# (FramesDataset, DatasetRepeater, train.py's use_sync_bn check, Visualizer), and ours.
SECTION_DEFAULTS = {
    "dataset_params": {
        "root_dir": Unset(str),  # a video root in the original's layout, or "synthetic"
        "frame_shape": (256, 256, 3),  # null: frames at their stored size
        "id_sampling": False,
        "pairs_list": Unset(str),
        # Kept as given: the data pipeline reads the original's groups (a missing one is off).
        "augmentation_params": Group(
            absent={
                "flip_param": {"horizontal_flip": True, "time_flip": True},
                "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
            },
            given=None,
        ),
        # Ours: build_synthetic_dataset's arguments, used when root_dir is "synthetic".
        "synthetic": {"num_train": 1000, "num_test": 50, "frames": 32, "size": 64, "seed": 0},
    },
    "train_params": {
        **_stage_defaults(),
        "use_sync_bn": False,
        "scales": (1, 0.5, 0.25, 0.125),
        # Without sigma_tps and points_tps the original's transform has no TPS part.
        "transform_params": Group(
            absent={"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
            given={"sigma_affine": REQUIRED, "sigma_tps": Unset(float), "points_tps": Unset(int)},
        ),
        "loss_weights": Group(
            absent={
                "perceptual": (10, 10, 10, 10, 10),
                "equivariance_shift": 10.0,
                "equivariance_affine": 10.0,
                "l1": 0.0,
            },
            given={
                "perceptual": (),
                "equivariance_shift": 0.0,
                "equivariance_affine": 0.0,
                "l1": 0.0,
            },  # l1: ours, an L1 pyramid over `scales`
        ),
        "vgg19_weights": Unset(str),  # ours: torchvision's vgg19 file, for the perceptual loss
    },
    "train_avd_params": {
        **_stage_defaults(),
        "random_scale": 0.25,
        "lambda_shift": 1.0,
        "lambda_affine": 1.0,
    },
    "reconstruction_params": {},
    "animate_params": {"num_pairs": 50, "mode": "avd"},
    "visualizer_params": {"kp_size": 5},
}

# Fields the original accepts that this library ignores: accepted, kept (so that a YAML file
# loads key for key), not filled in, and listed in one warning at load (`report_ignored`).
IGNORED = {
    "model_params.region_predictor_params.fast_svd": "the 2x2 SVD is always the exact one",
    "train_params.dataloader_workers": "grain sets its own threads",
    "train_params.checkpoint_freq": "checkpoints follow checkpoint_every_steps",
    "train_avd_params.dataloader_workers": "grain sets its own threads",
    "train_avd_params.checkpoint_freq": "checkpoints follow checkpoint_every_steps",
    "reconstruction_params.num_videos": "every test video is reconstructed",
    "reconstruction_params.format": "videos are written as .mp4, frames as .png",
    "animate_params.format": "videos are written as .mp4",
    "visualizer_params.draw_border": "the visualiser's look is fixed",
    "visualizer_params.colormap": "the visualiser's look is fixed",
    "visualizer_params.region_bg_color": "the visualiser's look is fixed",
}

# Fields stored as float even when written as an integer (YAML `scale_factor: 1`), so
# that ConfigDict's type lock accepts later float overrides such as
# `--config.model_params.region_predictor_params.scale_factor=0.5`.
FLOAT_FIELDS = (
    "model_params.region_predictor_params.temperature",
    "model_params.region_predictor_params.scale_factor",
    "model_params.generator_params.pixelwise_flow_predictor_params.scale_factor",
    "model_params.generator_params.pixelwise_flow_predictor_params.region_var",
    "train_params.lr",
    "train_params.transform_params.sigma_affine",
    "train_params.transform_params.sigma_tps",
    "train_params.loss_weights.equivariance_shift",
    "train_params.loss_weights.equivariance_affine",
    "train_params.loss_weights.l1",
    "train_avd_params.lr",
    "train_avd_params.random_scale",
    "train_avd_params.lambda_shift",
    "train_avd_params.lambda_affine",
)

SCHEMA = {"model_params": MODEL_DEFAULTS, **SECTION_DEFAULTS}

ConfigLike = ml_collections.ConfigDict | Mapping


# --------------------------------------------------------------------------- helpers


def _to_plain(value: Any) -> Any:
    """ConfigDicts/mappings -> dicts, tuples -> lists, recursively (YAML-safe types)."""
    if isinstance(value, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _fill(node: dict, schema: dict) -> None:
    """Add the keys of `schema` missing from `node`, recursively (REQUIRED keys left missing)."""
    for key, default in schema.items():
        if isinstance(default, Group):
            if key not in node:
                node[key] = copy.deepcopy(default.absent)
            elif default.given is not None and isinstance(node[key], dict):
                _fill(node[key], default.given)
        elif isinstance(default, dict):
            if node.get(key) is None:
                node[key] = {}
            if isinstance(node[key], dict):
                _fill(node[key], default)
        elif default is not REQUIRED and key not in node:
            node[key] = None if isinstance(default, Unset) else copy.deepcopy(default)


def _coerce_floats(cfg: dict) -> None:
    """Store FLOAT_FIELDS as floats (ints only; anything else is left for validation)."""
    for dotted in FLOAT_FIELDS:
        *parents, leaf = dotted.split(".")
        node = cfg
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and type(node.get(leaf)) is int:
            node[leaf] = float(node[leaf])


def _lists_to_tuples(value: Any) -> Any:
    """Lists -> tuples, recursively: config_flags overrides tuple fields, not list fields."""
    if isinstance(value, dict):
        return {k: _lists_to_tuples(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_lists_to_tuples(v) for v in value)
    return value


def _typed_nones(node: dict, schema: dict) -> None:
    """Replace a None of a declared field by a placeholder of the field's type (overridable)."""
    for key, default in schema.items():
        value = node.get(key)
        if isinstance(default, Group):
            default = default.given
        if isinstance(default, dict):
            if isinstance(value, dict):
                _typed_nones(value, default)
        elif key in node and value is None and default is not REQUIRED and default is not None:
            node[key] = config_dict.placeholder(default.kind if isinstance(default, Unset) else type(default))


def _present(node: Any, prefix: str = "") -> list[str]:
    """Dotted names of every key of a nested mapping."""
    if not isinstance(node, Mapping):
        return []
    names = []
    for key, value in node.items():
        names.append(prefix + str(key))
        names.extend(_present(value, f"{prefix}{key}."))
    return names


# --------------------------------------------------------------------------- defaults


def fill_defaults(cfg: ConfigLike) -> ml_collections.ConfigDict:
    """Return a new ConfigDict with every default merged in; `cfg` is not modified.

    Missing sections are created and completed from SCHEMA. Required fields without a
    default are left missing for `validate_config` to report. Lists are stored as tuples
    and declared fields that are None as typed placeholders, so that every field can be
    overridden from the command line (`--config.train_params.scales='(1, 0.5)'`).
    """
    plain = _to_plain(cfg)
    if not isinstance(plain, dict):
        raise TypeError(f"config: expected a mapping or ConfigDict, got {type(cfg).__name__}")
    for name in SECTIONS:
        if plain.get(name) is None:
            plain[name] = {}
    _fill(plain, SCHEMA)
    _coerce_floats(plain)
    plain = _lists_to_tuples(plain)
    _typed_nones(plain, SCHEMA)
    return ml_collections.ConfigDict(plain)


def report_ignored(cfg: ConfigLike, source: str) -> None:
    """One warning listing the fields of `cfg` that the original accepts and this library
    ignores (IGNORED), if it holds any; `source` names where the config came from."""
    present = [name for name in _present(_to_plain(cfg)) if name in IGNORED]
    if present:
        warnings.warn(f"{source}: fields of the original that this library ignores: {', '.join(present)}", stacklevel=2)


# --------------------------------------------------------------------------- validation


def _fail(field: str, message: str) -> None:
    raise ConfigError(f"{field}: {message}")


def _check_keys(node: Any, schema: dict, prefix: str, required: bool) -> None:
    """Require a mapping with no undeclared keys and, if `required`, every REQUIRED key.

    Training sections (`required` False) need their REQUIRED keys only once they give one
    of them: a config without training fields can still build, convert and animate.
    """
    if not isinstance(node, Mapping):
        _fail(prefix, f"expected a mapping, got {type(node).__name__}")
    unknown = sorted(k for k in node if k not in schema and f"{prefix}.{k}" not in IGNORED)
    if unknown:
        _fail(f"{prefix}.{unknown[0]}", f"unknown field (declared: {', '.join(schema)})")
    needed = [k for k, d in schema.items() if d is REQUIRED]
    required = required or any(node.get(k) is not None for k in needed)
    for key, default in schema.items():
        field = f"{prefix}.{key}"
        if isinstance(default, Group):
            default = default.given
        if key not in node or node[key] is None:
            if required and (default is REQUIRED or isinstance(default, dict)):
                _fail(field, "required field is missing")
        elif isinstance(default, dict):
            _check_keys(node[key], default, field, required)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(value: Any, field: str, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        kind = "positive int" if minimum == 1 else f"int >= {minimum}"
        _fail(field, f"expected a {kind}, got {value!r}")


def _check_bool(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        _fail(field, f"expected true or false, got {value!r}")


def _check_scale(value: Any, field: str) -> None:
    if not _is_number(value) or not 0 < value <= 1:
        _fail(field, f"expected a number in (0, 1], got {value!r}")


def _check_positive(value: Any, field: str) -> None:
    if not _is_number(value) or not value > 0:
        _fail(field, f"expected a positive number, got {value!r}")


def _check_choice(value: Any, field: str, choices: tuple) -> None:
    if value not in choices:
        _fail(field, f"expected one of {', '.join(choices)}, got {value!r}")


def _validate_model(mp: Mapping) -> None:
    """Types and ranges of model_params (presence is checked by _check_keys)."""
    p = "model_params"
    _check_int(mp["num_regions"], f"{p}.num_regions", 1)
    _check_int(mp["num_channels"], f"{p}.num_channels", 1)
    _check_bool(mp["estimate_affine"], f"{p}.estimate_affine")
    _check_bool(mp["revert_axis_swap"], f"{p}.revert_axis_swap")
    _check_choice(mp["compute_dtype"], f"{p}.compute_dtype", COMPUTE_DTYPES)

    bg, bp = mp["bg_predictor_params"], f"{p}.bg_predictor_params"
    for key in ("block_expansion", "max_features", "num_blocks"):
        _check_int(bg[key], f"{bp}.{key}", 1)
    _check_choice(bg["bg_type"], f"{bp}.bg_type", BG_TYPES)

    rp, rpp = mp["region_predictor_params"], f"{p}.region_predictor_params"
    for key in ("block_expansion", "max_features", "num_blocks"):
        _check_int(rp[key], f"{rpp}.{key}", 1)
    _check_int(rp["pad"], f"{rpp}.pad", 0)
    _check_positive(rp["temperature"], f"{rpp}.temperature")
    _check_scale(rp["scale_factor"], f"{rpp}.scale_factor")
    _check_bool(rp["pca_based"], f"{rpp}.pca_based")

    gen, gp = mp["generator_params"], f"{p}.generator_params"
    for key in ("block_expansion", "max_features"):
        _check_int(gen[key], f"{gp}.{key}", 1)
    for key in ("num_down_blocks", "num_bottleneck_blocks"):
        _check_int(gen[key], f"{gp}.{key}", 0)
    _check_bool(gen["skips"], f"{gp}.skips")

    fl, fp = gen["pixelwise_flow_predictor_params"], f"{gp}.pixelwise_flow_predictor_params"
    for key in ("block_expansion", "max_features", "num_blocks"):
        _check_int(fl[key], f"{fp}.{key}", 1)
    _check_scale(fl["scale_factor"], f"{fp}.scale_factor")
    _check_positive(fl["region_var"], f"{fp}.region_var")
    for key in ("use_covar_heatmap", "use_deformed_source", "estimate_occlusion_map"):
        _check_bool(fl[key], f"{fp}.{key}")

    avd, ap = mp["avd_network_params"], f"{p}.avd_network_params"
    for key in ("id_bottle_size", "pose_bottle_size"):
        _check_int(avd[key], f"{ap}.{key}", 1)
    _check_bool(avd["revert_axis_swap"], f"{ap}.revert_axis_swap")


def validate_config(cfg: ConfigLike) -> None:
    """Raise ConfigError, naming the field, if `cfg` is not a usable MRAA config.

    Expects a filled config (`fill_defaults`). Checks that no section holds an undeclared
    field (model_params: the original's constructors reject unknown keywords too; elsewhere
    a misspelt field would be silently unused), that model_params has every required field
    and a training section every required field once it gives one, the types and ranges of
    the architecture values, and those of the fields the scripts read.
    """
    plain = _to_plain(cfg)
    if not isinstance(plain, dict):
        raise ConfigError(f"config: expected a mapping, got {type(cfg).__name__}")
    for name in SECTIONS:
        if not isinstance(plain.get(name), dict):
            _fail(
                name,
                "required section is missing"
                if plain.get(name) is None
                else f"expected a mapping, got {type(plain[name]).__name__}",
            )
    unknown = sorted(set(plain) - set(SECTIONS))
    if unknown:
        _fail(unknown[0], f"unknown section (declared: {', '.join(SECTIONS)})")
    for name in SECTIONS:
        _check_keys(plain[name], SCHEMA[name], name, required=name == "model_params")
    _validate_model(plain["model_params"])
    _validate_sections(plain)


def _validate_sections(cfg: Mapping) -> None:
    """Types and ranges of the fields outside model_params that the code reads."""
    dp, tp = cfg["dataset_params"], cfg["train_params"]
    _check_bool(dp["id_sampling"], "dataset_params.id_sampling")
    shape = dp["frame_shape"]
    if shape is not None and (
        not isinstance(shape, list) or len(shape) not in (2, 3) or not all(_is_int(s) and s > 0 for s in shape)
    ):
        _fail("dataset_params.frame_shape", f"expected null, [H, W] or [H, W, C] of positive ints, got {shape!r}")
    for key, value in dp["synthetic"].items():
        _check_int(value, f"dataset_params.synthetic.{key}", 0 if key == "seed" else 1)
    _check_bool(tp["use_sync_bn"], "train_params.use_sync_bn")
    for i, scale in enumerate(tp["scales"]):
        _check_scale(scale, f"train_params.scales[{i}]")
    for name in ("train_params", "train_avd_params"):
        for key in ("num_repeats", "checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
            _check_int(cfg[name][key], f"{name}.{key}", 1)
        _check_int(cfg[name]["skip_nonfinite_steps"], f"{name}.skip_nonfinite_steps", 0)
    _check_choice(cfg["animate_params"]["mode"], "animate_params.mode", ANIMATE_MODES)
    _check_int(cfg["animate_params"]["num_pairs"], "animate_params.num_pairs", 1)
    _check_int(cfg["visualizer_params"]["kp_size"], "visualizer_params.kp_size", 1)


# --------------------------------------------------------------------------- loading


def config_from_dict(d: ConfigLike) -> ml_collections.ConfigDict:
    """Build a complete, validated ConfigDict from a nested dict (what configs/*.py call)."""
    cfg = fill_defaults(d)
    validate_config(cfg)
    return cfg


def config_from_yaml(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """Read an original-format YAML config (yaml.safe_load), fill defaults, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (expected an existing .yaml/.yml file)")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a readable YAML file ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return _config_of_file(path, data)


def _config_of_file(path: Path, data: ConfigLike) -> ml_collections.ConfigDict:
    """config_from_dict(data), its errors prefixed with the file they come from; its ignored
    fields reported."""
    try:
        cfg = config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    report_ignored(data, str(path))
    return cfg


def _config_from_py(path: Path) -> ml_collections.ConfigDict:
    """Import a configs/*.py file by path and return its completed get_config()."""
    module_name = f"_mraa_config_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot import as a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"{path}: a Python config file must define get_config()")
    return _config_of_file(path, get_config())


def load_config(spec: ConfigLike | str | os.PathLike) -> ml_collections.ConfigDict:
    """Load a config from a ConfigDict/mapping, a `configs/*.py` path or a `.yaml`/`.yml` path.

    Always returns a new, complete and validated ConfigDict.
    """
    if isinstance(spec, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict, Mapping)):
        return config_from_dict(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"load_config: expected a ConfigDict or a path, got {type(spec).__name__}")
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix not in (".py", ".yaml", ".yml"):
        raise ConfigError(
            f"unknown config file extension {path.suffix!r} for {path}: "
            "expected a configs/*.py file or a .yaml/.yml file"
        )
    if not path.is_file():
        raise ConfigError(
            f"config file not found: {path} (expected an existing "
            f"{'configs/*.py' if suffix == '.py' else '.yaml/.yml'} file)"
        )
    if suffix == ".py":
        return _config_from_py(path)
    return config_from_yaml(path)


def save_config(cfg: ConfigLike, path: str | os.PathLike) -> None:
    """Write `cfg` as original-format YAML (plain types), e.g. beside a converted checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(_to_plain(cfg), f, sort_keys=False, default_flow_style=None)
