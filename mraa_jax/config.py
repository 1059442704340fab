"""Configuration: one `ml_collections.ConfigDict` schema shared by YAML and Python configs.

The ConfigDict mirrors the original's YAML files (snap-research/articulated-animation,
`config/*.yaml`) key for key, so that a published YAML file and the matching
`configs/<name>.py` load to equal ConfigDicts. Top-level sections:

    dataset_params, model_params, train_params, train_avd_params,
    reconstruction_params, animate_params, visualizer_params

After loading, `model_params` is always complete: every default that the original's
module constructors apply to an omitted key is written into the config, so the model
code never needs to know a default. Other sections keep what the source holds, plus
the defaults the original's scripts assume.

Public API:
    fill_defaults(cfg) -> ConfigDict         defaults merged in (input left untouched)
    validate_config(cfg) -> None             raises ConfigError (an InputError) naming the bad field
    config_from_dict(d) -> ConfigDict        normalise + fill + validate (configs/*.py use it)
    config_from_yaml(path) -> ConfigDict     an original-format YAML file
    load_config(spec) -> ConfigDict          a ConfigDict, a configs/*.py path or a YAML path
    save_config(cfg, path) -> None           YAML that config_from_yaml reads back equal
"""
from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import ml_collections
import yaml

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

# A key mapped to REQUIRED has no default: the original's constructors take it positionally.
REQUIRED = object()

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
        "fast_svd": False,
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

# Defaults of the other sections: what the original's scripts and classes fall back to
# (FramesDataset, DatasetRepeater, train.py's use_sync_bn check, Visualizer). Filled one
# level deep only: a dict given in the source (e.g. transform_params without TPS keys,
# which disables TPS in the original) is kept as it is.
SECTION_DEFAULTS = {
    "dataset_params": {
        "frame_shape": [256, 256, 3],
        "id_sampling": False,
        "pairs_list": None,
    },
    "train_params": {
        "num_repeats": 1,
        "use_sync_bn": False,
        "scales": [1, 0.5, 0.25, 0.125],
        "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
        "loss_weights": {
            "perceptual": [10, 10, 10, 10, 10],
            "equivariance_shift": 10,
            "equivariance_affine": 10,
        },
    },
    "train_avd_params": {
        "num_repeats": 1,
        "random_scale": 0.25,
        "lambda_shift": 1,
        "lambda_affine": 1,
    },
    "reconstruction_params": {"num_videos": None, "format": ".mp4"},
    "animate_params": {"num_pairs": 50, "format": ".mp4", "mode": "avd"},
    "visualizer_params": {
        "kp_size": 5,
        "draw_border": False,
        "colormap": "gist_rainbow",
        "region_bg_color": [0, 0, 0],
    },
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
    "train_avd_params.lr",
    "train_avd_params.random_scale",
)

ConfigLike = Union[ml_collections.ConfigDict, Mapping]


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


def _fill_tree(section: dict, defaults: dict) -> None:
    """Recursively add the keys of `defaults` missing from `section` (REQUIRED keys skipped)."""
    for key, default in defaults.items():
        if isinstance(default, dict):
            if section.get(key) is None:
                section[key] = {}
            if isinstance(section[key], dict):
                _fill_tree(section[key], default)
        elif default is not REQUIRED and key not in section:
            section[key] = copy.deepcopy(default)


def _fill_flat(section: dict, defaults: dict) -> None:
    """Add the top-level keys of `defaults` missing from `section`."""
    for key, default in defaults.items():
        section.setdefault(key, copy.deepcopy(default))


def _coerce_floats(cfg: dict) -> None:
    """Store FLOAT_FIELDS as floats (ints only; anything else is left for validation)."""
    for dotted in FLOAT_FIELDS:
        *parents, leaf = dotted.split(".")
        node = cfg
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and type(node.get(leaf)) is int:
            node[leaf] = float(node[leaf])


# --------------------------------------------------------------------------- defaults


def fill_defaults(cfg: ConfigLike) -> ml_collections.ConfigDict:
    """Return a new ConfigDict with every default merged in; `cfg` is not modified.

    Missing sections are created; `model_params` is completed recursively with
    MODEL_DEFAULTS, other sections one level deep with SECTION_DEFAULTS. Required
    fields without a default are left missing for `validate_config` to report.
    """
    plain = _to_plain(cfg)
    if not isinstance(plain, dict):
        raise TypeError(f"config: expected a mapping or ConfigDict, got {type(cfg).__name__}")
    for name in SECTIONS:
        if plain.get(name) is None:
            plain[name] = {}
    if isinstance(plain["model_params"], dict):
        _fill_tree(plain["model_params"], MODEL_DEFAULTS)
    for name, defaults in SECTION_DEFAULTS.items():
        if isinstance(plain[name], dict):
            _fill_flat(plain[name], defaults)
    _coerce_floats(plain)
    return ml_collections.ConfigDict(plain)


# --------------------------------------------------------------------------- validation


def _fail(field: str, message: str) -> None:
    raise ConfigError(f"{field}: {message}")


def _check_keys(node: Any, schema: dict, prefix: str) -> None:
    """Require a mapping holding every REQUIRED key of `schema` and no unknown keys."""
    if not isinstance(node, Mapping):
        _fail(prefix, f"expected a mapping, got {type(node).__name__}")
    unknown = sorted(set(node.keys()) - set(schema))
    if unknown:
        _fail(f"{prefix}.{unknown[0]}",
              f"unknown field (the original's constructors accept: {', '.join(schema)})")
    for key, default in schema.items():
        field = f"{prefix}.{key}"
        if key not in node or node[key] is None:
            if default is REQUIRED or isinstance(default, dict):
                _fail(field, "required field is missing")
        elif isinstance(default, dict):
            _check_keys(node[key], default, field)


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
    _check_choice(mp.get("compute_dtype", "float32"), f"{p}.compute_dtype", COMPUTE_DTYPES)

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
    for key in ("pca_based", "fast_svd"):
        _check_bool(rp[key], f"{rpp}.{key}")

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

    Checks that model_params has every required field and no unknown one (the
    original's constructors reject unknown keywords too), the types and ranges of the
    architecture values, and the choices of bg_type and animate_params.mode.
    """
    plain = _to_plain(cfg)
    if not isinstance(plain, dict):
        raise ConfigError(f"config: expected a mapping, got {type(cfg).__name__}")
    for name in SECTIONS:
        if not isinstance(plain.get(name), dict):
            _fail(name, "required section is missing" if plain.get(name) is None
                  else f"expected a mapping, got {type(plain[name]).__name__}")
    _check_keys(plain["model_params"], MODEL_DEFAULTS, "model_params")
    _validate_model(plain["model_params"])
    if "mode" in plain["animate_params"]:
        _check_choice(plain["animate_params"]["mode"], "animate_params.mode", ANIMATE_MODES)
    for i, scale in enumerate(plain["train_params"].get("scales") or []):
        _check_scale(scale, f"train_params.scales[{i}]")


# --------------------------------------------------------------------------- loading


def config_from_dict(d: ConfigLike) -> ml_collections.ConfigDict:
    """Build a complete, validated ConfigDict from a nested dict (what configs/*.py call)."""
    cfg = fill_defaults(d)
    validate_config(cfg)
    return cfg


def config_from_yaml(path: Union[str, os.PathLike]) -> ml_collections.ConfigDict:
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
    """config_from_dict(data), its errors prefixed with the file they come from."""
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


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


def load_config(spec: Union[ConfigLike, str, os.PathLike]) -> ml_collections.ConfigDict:
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
        raise ConfigError(f"unknown config file extension {path.suffix!r} for {path}: "
                          "expected a configs/*.py file or a .yaml/.yml file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (expected an existing "
                          f"{'configs/*.py' if suffix == '.py' else '.yaml/.yml'} file)")
    if suffix == ".py":
        return _config_from_py(path)
    return config_from_yaml(path)


def save_config(cfg: ConfigLike, path: Union[str, os.PathLike]) -> None:
    """Write `cfg` as original-format YAML (plain types), e.g. beside a converted checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(_to_plain(cfg), f, sort_keys=False, default_flow_style=None)
