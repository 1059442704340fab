"""Tests of mraa_jax.config and the four published configs/*.py (fast, no JAX)."""

import json
import warnings

import ml_collections
import pytest
import yaml
from conftest import FIXTURES, REPO

from mraa_jax.config import config_from_yaml, fill_defaults, load_config, save_config, validate_config
from mraa_jax.errors import ConfigError

TINY_YAML = FIXTURES / "mraa_tiny" / "config.yaml"
MANIFESTS = FIXTURES / "state_dict_manifests.json"
NAMES = ("vox256", "taichi256", "ted384", "mgif256")


def config_path(name):
    return REPO / "configs" / f"{name}.py"


@pytest.fixture(params=NAMES)
def published(request):
    return request.param, load_config(config_path(request.param))


# ------------------------------------------------------------------ published configs

# Values shared by the four published YAML files.
COMMON = {
    "model_params.num_regions": 10,
    "model_params.num_channels": 3,
    "model_params.estimate_affine": True,
    "model_params.revert_axis_swap": True,
    "model_params.region_predictor_params.temperature": 0.1,
    "model_params.region_predictor_params.block_expansion": 32,
    "model_params.region_predictor_params.max_features": 1024,
    "model_params.region_predictor_params.scale_factor": 0.25,
    "model_params.region_predictor_params.num_blocks": 5,
    "model_params.region_predictor_params.pca_based": True,
    "model_params.region_predictor_params.fast_svd": False,
    "model_params.generator_params.block_expansion": 64,
    "model_params.generator_params.max_features": 512,
    "model_params.generator_params.num_down_blocks": 2,
    "model_params.generator_params.num_bottleneck_blocks": 6,
    "model_params.generator_params.skips": True,
    "model_params.generator_params.pixelwise_flow_predictor_params.block_expansion": 64,
    "model_params.generator_params.pixelwise_flow_predictor_params.max_features": 1024,
    "model_params.generator_params.pixelwise_flow_predictor_params.num_blocks": 5,
    "model_params.generator_params.pixelwise_flow_predictor_params.scale_factor": 0.25,
    "model_params.generator_params.pixelwise_flow_predictor_params.region_var": 0.01,
    "model_params.generator_params.pixelwise_flow_predictor_params.use_deformed_source": True,
    "model_params.generator_params.pixelwise_flow_predictor_params.use_covar_heatmap": True,
    "model_params.generator_params.pixelwise_flow_predictor_params.estimate_occlusion_map": True,
    "model_params.bg_predictor_params.block_expansion": 32,
    "model_params.bg_predictor_params.max_features": 1024,
    "model_params.bg_predictor_params.num_blocks": 5,
    "model_params.avd_network_params.id_bottle_size": 64,
    "model_params.avd_network_params.pose_bottle_size": 64,
    "model_params.avd_network_params.revert_axis_swap": True,
    "dataset_params.frame_shape": None,
    "train_params.num_epochs": 100,
    "train_params.epoch_milestones": [60, 90],
    "train_params.lr": 2.0e-4,
    "train_params.use_sync_bn": False,
    "train_params.checkpoint_freq": 50,
    "train_params.scales": [1, 0.5, 0.25, 0.125],
    "train_params.transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
    "train_params.loss_weights": {"perceptual": [10] * 5, "equivariance_shift": 10, "equivariance_affine": 10, "l1": 0},
    "train_avd_params.num_epochs": 30,
    "train_avd_params.batch_size": 256,
    "train_avd_params.checkpoint_freq": 50,
    "train_avd_params.lr": 1.0e-3,
    "train_avd_params.random_scale": 0.25,
    "train_avd_params.lambda_shift": 1,
    "train_avd_params.lambda_affine": 1,
    "reconstruction_params": {"num_videos": 1000, "format": ".mp4"},
    "animate_params": {"num_pairs": 50, "format": ".mp4", "mode": "avd"},
    "visualizer_params": {"kp_size": 5, "draw_border": True, "colormap": "gist_rainbow", "region_bg_color": [1, 1, 1]},
}

# Values that differ between the published YAML files.
SPECIFIC = {
    "vox256": {
        "dataset_params.root_dir": "data/vox-png",
        "dataset_params.id_sampling": True,
        "model_params.region_predictor_params.pad": 3,
        "model_params.bg_predictor_params.bg_type": "affine",
        "train_params.num_repeats": 75,
        "train_params.batch_size": 14,
        "train_avd_params.num_repeats": 2000,
        "train_avd_params.epoch_milestones": [20, 25],
    },
    "taichi256": {
        "dataset_params.root_dir": "data/taichi-png",
        "dataset_params.id_sampling": True,
        "model_params.region_predictor_params.pad": 0,
        "model_params.bg_predictor_params.bg_type": "affine",
        "train_params.num_repeats": 150,
        "train_params.batch_size": 14,
        "train_avd_params.num_repeats": 150,
        "train_avd_params.epoch_milestones": [20, 25],
    },
    "ted384": {
        "dataset_params.root_dir": "data/TED384-v2",
        "dataset_params.id_sampling": True,
        "model_params.region_predictor_params.pad": 0,
        "model_params.bg_predictor_params.bg_type": "affine",
        "train_params.num_repeats": 150,
        "train_params.batch_size": 6,
        "train_avd_params.num_repeats": 150,
        "train_avd_params.epoch_milestones": [20, 25],
    },
    "mgif256": {
        "dataset_params.root_dir": "data/moving-gif",
        "dataset_params.id_sampling": False,
        "dataset_params.pairs_list": None,
        "dataset_params.augmentation_params.jitter_param": {"hue": 0.5},
        "dataset_params.augmentation_params.crop_param": {"size": [256, 256]},
        "model_params.region_predictor_params.pad": 0,
        "model_params.bg_predictor_params.bg_type": "zero",
        "train_params.num_repeats": 50,
        "train_params.batch_size": 14,
        "train_avd_params.num_repeats": 50,
        "train_avd_params.epoch_milestones": [60, 90],
    },
}


def plain(value):
    """ConfigDicts -> dicts, tuples (how the config stores lists) -> lists."""
    return json.loads(json.dumps(value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value))


def get(cfg, dotted):
    node = cfg
    for name in dotted.split("."):
        node = node[name]
    return plain(node)


def test_published_config_values(published):
    name, cfg = published
    assert isinstance(cfg, ml_collections.ConfigDict)
    validate_config(cfg)
    for dotted, expected in {**COMMON, **SPECIFIC[name]}.items():
        assert get(cfg, dotted) == expected, f"{name}: {dotted}"


def test_published_config_is_complete(published):
    """get_config() already holds every default: filling again changes nothing."""
    _, cfg = published
    assert fill_defaults(cfg) == cfg


def test_published_configs_share_keys():
    """All four configs have the same model/train keys (dataset augmentations may differ)."""

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k != "augmentation_params":
                out |= keys(v, prefix + k + ".")
        return out

    sets = [keys(load_config(config_path(n)).to_dict()) for n in NAMES]
    assert all(s == sets[0] for s in sets)


def _expected_shapes(mp):
    """Shapes of the original's parameters that the architecture values determine."""
    k, c = mp["num_regions"], mp["num_channels"]
    rp, bg, gen = mp["region_predictor_params"], mp["bg_predictor_params"], mp["generator_params"]
    fl, avd = gen["pixelwise_flow_predictor_params"], mp["avd_network_params"]

    def encoder(prefix, be, in_features, n, max_features):
        chans = [in_features] + [min(max_features, be * 2 ** (i + 1)) for i in range(n)]
        return {f"{prefix}down_blocks.{i}.conv.weight": [chans[i + 1], chans[i], 3, 3] for i in range(n)}

    def aa_kernel(scale):  # AntiAliasInterpolation2d: sigma = (1/s - 1)/2, size 2*round(4 sigma)+1
        return 2 * round((1 / scale - 1) / 2 * 4) + 1

    flow_in = (k + 1) * (c * fl["use_deformed_source"] + 1)
    shapes = {
        "region_predictor": {
            **encoder("predictor.encoder.", rp["block_expansion"], c, rp["num_blocks"], rp["max_features"]),
            "regions.weight": [k, rp["block_expansion"] + c, 7, 7],
            "down.weight": [c, 1, aa_kernel(rp["scale_factor"]), aa_kernel(rp["scale_factor"])],
        }
    }
    be, n, mx = gen["block_expansion"], gen["num_down_blocks"], gen["max_features"]
    shapes["generator"] = {
        "first.conv.weight": [be, c, 7, 7],
        **encoder("", be, be, n, mx),
        **{
            f"up_blocks.{i}.conv.weight": [min(mx, be * 2 ** (n - i - 1)), min(mx, be * 2 ** (n - i)), 3, 3]
            for i in range(n)
        },
        **{
            f"bottleneck.r{i}.conv1.weight": [min(mx, be * 2**n)] * 2 + [3, 3]
            for i in range(gen["num_bottleneck_blocks"])
        },
        "final.weight": [c, be, 7, 7],
        **encoder(
            "pixelwise_flow_predictor.hourglass.encoder.",
            fl["block_expansion"],
            flow_in,
            fl["num_blocks"],
            fl["max_features"],
        ),
        "pixelwise_flow_predictor.mask.weight": [k + 1, fl["block_expansion"] + flow_in, 7, 7],
        "pixelwise_flow_predictor.down.weight": [c, 1] + [aa_kernel(fl["scale_factor"])] * 2,
    }
    if fl["estimate_occlusion_map"]:
        shapes["generator"]["pixelwise_flow_predictor.occlusion.weight"] = [1, fl["block_expansion"] + flow_in, 7, 7]
    shapes["bg_predictor"] = (
        {}
        if bg["bg_type"] == "zero"
        else {
            **encoder("encoder.", bg["block_expansion"], 2 * c, bg["num_blocks"], bg["max_features"]),
            "fc.weight": [
                {"shift": 2, "affine": 6, "perspective": 8}[bg["bg_type"]],
                min(bg["max_features"], bg["block_expansion"] * 2 ** bg["num_blocks"]),
            ],
        }
    )
    shapes["avd_network"] = {
        "id_encoder.0.weight": [256, 6 * k],
        "id_encoder.9.weight": [avd["id_bottle_size"], 1024],
        "pose_encoder.0.weight": [256, 6 * k],
        "pose_encoder.9.weight": [avd["pose_bottle_size"], 1024],
        "decoder.0.weight": [1024, avd["id_bottle_size"] + avd["pose_bottle_size"]],
        "decoder.9.weight": [6 * k, 256],
    }
    return shapes


def test_architecture_matches_published_parameter_shapes(published):
    name, cfg = published
    manifest = json.loads(MANIFESTS.read_text())["configs"][name]
    mp = cfg.model_params.to_dict()
    for module, shapes in _expected_shapes(mp).items():
        state = manifest[module]["state_dict"]
        for key, shape in shapes.items():
            assert key in state, f"{name}.{module}: {key} not in the published checkpoint"
            assert state[key]["shape"] == shape, f"{name}.{module}.{key}"
        # No extra blocks beyond what the config builds.
        for key in state:
            if ".conv.weight" in key and "down_blocks" in key and "decoder" not in key:
                assert key in shapes, f"{name}.{module}: unexpected {key}"
        if mp["region_predictor_params"]["pca_based"]:
            assert "jacobian.weight" not in manifest["region_predictor"]["state_dict"]
    bottleneck = {k.split(".")[1] for k in manifest["generator"]["state_dict"] if k.startswith("bottleneck.")}
    assert len(bottleneck) == mp["generator_params"]["num_bottleneck_blocks"]
    assert (manifest["bg_predictor"]["num_parameters"] == 0) == (mp["bg_predictor_params"]["bg_type"] == "zero")


# ------------------------------------------------------------------ YAML fixture


def test_fixture_yaml_loads_with_defaults():
    raw = yaml.safe_load(TINY_YAML.read_text())
    cfg = load_config(TINY_YAML)
    assert cfg == config_from_yaml(TINY_YAML)
    mp = cfg.model_params
    # Defaults the YAML omits.
    assert mp.avd_network_params.revert_axis_swap is True
    assert mp.generator_params.pixelwise_flow_predictor_params.region_var == 0.01
    assert cfg.animate_params.mode == "avd"

    # Everything the YAML holds is kept unchanged.
    def check(node, expected, prefix):
        for key, value in expected.items():
            if isinstance(value, dict):
                check(node[key], value, f"{prefix}{key}.")
            else:
                assert plain(node[key]) == value, prefix + key

    check(cfg, raw, "")
    assert mp.num_regions == 5 and mp.region_predictor_params.scale_factor == 0.5
    assert cfg.dataset_params.frame_shape == (64, 64, 3)


def test_fixture_yaml_round_trip(tmp_path):
    cfg = config_from_yaml(TINY_YAML)
    save_config(cfg, tmp_path / "config.yaml")
    assert config_from_yaml(tmp_path / "config.yaml") == cfg


def test_published_round_trip(tmp_path, published):
    name, cfg = published
    out = tmp_path / f"{name}.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    # The file holds plain YAML types only (safe_load would fail otherwise).
    assert isinstance(yaml.safe_load(out.read_text()), dict)


def test_yaml_equivalent_of_python_config(tmp_path):
    """A YAML in the original's style, omitting keys that have defaults, gives the same config."""
    cfg = load_config(config_path("vox256"))
    plain = cfg.to_dict()
    # vox256.yaml has no pad; mgif256.yaml has no pairs_list or use_sync_bn; drop them.
    del plain["model_params"]["region_predictor_params"]["pad"]
    del plain["model_params"]["avd_network_params"]["revert_axis_swap"]
    del plain["model_params"]["generator_params"]["pixelwise_flow_predictor_params"]["region_var"]
    del plain["train_params"]["use_sync_bn"]
    del plain["dataset_params"]["pairs_list"]
    path = tmp_path / "vox256.yml"
    path.write_text(yaml.safe_dump(plain))
    assert load_config(path) == cfg


def test_load_config_accepts_configdict_without_mutating_it():
    cfg = ml_collections.ConfigDict(
        {
            "model_params": {
                "num_regions": 4,
                "bg_predictor_params": {"block_expansion": 8, "max_features": 16, "num_blocks": 2},
                "region_predictor_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 16},
                "generator_params": {
                    "block_expansion": 8,
                    "max_features": 16,
                    "num_down_blocks": 1,
                    "num_bottleneck_blocks": 1,
                    "pixelwise_flow_predictor_params": {"block_expansion": 8, "max_features": 16, "num_blocks": 2},
                },
            }
        }
    )
    before = cfg.to_dict()
    out = load_config(cfg)
    assert cfg.to_dict() == before
    mp = out.model_params
    assert mp.num_channels == 3 and mp.estimate_affine is False and mp.revert_axis_swap is True
    assert mp.bg_predictor_params.bg_type == "zero"
    rp = mp.region_predictor_params
    assert (rp.scale_factor, rp.num_blocks, rp.pca_based, rp.pad) == (1.0, 3, False, 3)
    assert "fast_svd" not in rp  # ignored by this library: not filled in
    assert mp.generator_params.skips is False
    fl = mp.generator_params.pixelwise_flow_predictor_params
    assert (
        fl.scale_factor,
        fl.region_var,
        fl.use_covar_heatmap,
        fl.use_deformed_source,
        fl.estimate_occlusion_map,
    ) == (1.0, 0.01, False, True, False)
    assert mp.avd_network_params.to_dict() == {"id_bottle_size": 64, "pose_bottle_size": 64, "revert_axis_swap": True}
    assert out.train_params.use_sync_bn is False
    # Float fields accept float overrides even when given as ints.
    out.model_params.region_predictor_params.scale_factor = 0.5


# ------------------------------------------------------------------ bad inputs


def _vox_dict():
    return load_config(config_path("vox256")).to_dict()


def test_bad_bg_type():
    d = _vox_dict()
    d["model_params"]["bg_predictor_params"]["bg_type"] = "foo"
    with pytest.raises(ValueError) as err:
        load_config(d)
    assert str(err.value) == (
        "model_params.bg_predictor_params.bg_type: expected one of zero, shift, affine, perspective, got 'foo'"
    )


def test_missing_num_regions(tmp_path):
    d = _vox_dict()
    del d["model_params"]["num_regions"]
    path = tmp_path / "bad.yaml"
    save_config(d, path)
    with pytest.raises(ValueError, match=r"model_params\.num_regions: required field is missing"):
        load_config(path)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("model_params.num_regions", 0, "model_params.num_regions: expected a positive int, got 0"),
        ("model_params.num_regions", True, "model_params.num_regions: expected a positive int, got True"),
        (
            "model_params.region_predictor_params.scale_factor",
            1.5,
            "model_params.region_predictor_params.scale_factor: expected a number in (0, 1], got 1.5",
        ),
        (
            "model_params.generator_params.pixelwise_flow_predictor_params.scale_factor",
            0,
            "model_params.generator_params.pixelwise_flow_predictor_params.scale_factor: "
            "expected a number in (0, 1], got 0",
        ),
        (
            "model_params.generator_params.skips",
            "yes",
            "model_params.generator_params.skips: expected true or false, got 'yes'",
        ),
        ("model_params.region_predictor_params.typo", 1, "model_params.region_predictor_params.typo: unknown field"),
        ("animate_params.mode", "foo", "animate_params.mode: expected one of standard, relative, avd, got 'foo'"),
    ],
)
def test_bad_values(field, value, message):
    d = _vox_dict()
    *parents, leaf = field.split(".")
    node = d
    for name in parents:
        node = node[name]
    node[leaf] = value
    with pytest.raises(ValueError) as err:
        validate_config(d)
    assert str(err.value).startswith(message)


def test_missing_section_fields():
    d = _vox_dict()
    del d["model_params"]["generator_params"]["pixelwise_flow_predictor_params"]
    with pytest.raises(ValueError, match=r"pixelwise_flow_predictor_params\.block_expansion: required"):
        load_config(d)


def test_unknown_extension(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    with pytest.raises(ValueError) as err:
        load_config(path)
    assert str(path) in str(err.value) and ".json" in str(err.value)
    assert "configs/*.py" in str(err.value) and ".yaml" in str(err.value)


@pytest.mark.parametrize("name", ["nope.yaml", "nope.yml", "nope.py"])
def test_missing_file(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "not found" in str(err.value)


def test_py_config_without_get_config(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        load_config(path)


# ------------------------------------------------------------------ the schema


def test_ignored_fields_reported_once_at_load():
    """One warning per loaded file, listing every ignored field the file holds."""
    from mraa_jax.config import IGNORED

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(config_path("vox256"))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{config_path('vox256')}: fields of the original that this library ignores: ")
    assert sorted(message.split(": ")[-1].split(", ")) == sorted(IGNORED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(config_path("shapes"))  # holds none of them
    assert caught == []


def test_ignored_fields_are_kept_not_filled():
    cfg = load_config(config_path("vox256"))
    assert cfg.train_params.dataloader_workers == 6 and cfg.visualizer_params.colormap == "gist_rainbow"
    shapes = load_config(config_path("shapes"))
    assert "dataloader_workers" not in shapes.train_params and "colormap" not in shapes.visualizer_params


def test_every_section_rejects_undeclared_fields():
    d = _vox_dict()
    d["train_params"]["checkpoint_every_step"] = 10  # misspelt
    with pytest.raises(ConfigError, match=r"^train_params\.checkpoint_every_step: unknown field"):
        load_config(d)
    d = _vox_dict()
    d["animate_params"]["typo"] = 1
    with pytest.raises(ConfigError, match=r"^animate_params\.typo: unknown field"):
        load_config(d)


def test_training_section_needs_its_required_fields_once_it_gives_one():
    d = _vox_dict()
    del d["train_avd_params"]["lr"]
    with pytest.raises(ConfigError, match=r"^train_avd_params\.lr: required field is missing"):
        load_config(d)
    d = _vox_dict()
    d["train_avd_params"] = {}  # no AVD training fields at all: the config still loads
    assert load_config(d).train_avd_params.random_scale == 0.25


def test_partial_groups_turn_missing_terms_off():
    """The original's behaviour: a loss weight or TPS parameter left out is off."""
    d = _vox_dict()
    d["train_params"]["loss_weights"] = {"equivariance_shift": 10}
    d["train_params"]["transform_params"] = {"sigma_affine": 0.05}
    tp = load_config(d).train_params
    assert plain(tp.loss_weights) == {"perceptual": [], "equivariance_shift": 10, "equivariance_affine": 0, "l1": 0}
    assert tp.transform_params.sigma_tps is None and tp.transform_params.points_tps is None


def test_synthetic_defaults_are_the_builders():
    from mraa_jax.config import SECTION_DEFAULTS
    from mraa_jax.data import synthetic

    ours = dict(SECTION_DEFAULTS["dataset_params"]["synthetic"])
    ours["num_frames"] = ours.pop("frames")
    assert ours == synthetic.DEFAULTS


def test_published_rejects_a_misspelt_difference():
    from mraa_jax.published import published

    with pytest.raises(KeyError, match="train_params.batchsize"):
        published({"train_params.batchsize": 4})


def test_command_line_overrides_lists_and_unset_fields():
    """config_flags overrides list fields (stored as tuples) and fields that are null."""
    from absl import flags
    from ml_collections import config_flags

    argv = [
        "prog",
        f"--config={config_path('vox256')}",
        "--config.train_params.scales=(1, 0.5)",
        "--config.train_params.loss_weights.perceptual=[1, 2, 3, 4, 5]",
        "--config.train_params.epoch_milestones=7",
        "--config.dataset_params.frame_shape=(128, 128, 3)",  # null in vox256
        "--config.dataset_params.pairs_list=pairs.csv",
        "--config.train_params.vgg19_weights=vgg19.pth",
        "--config.train_params.loss_weights.equivariance_shift=2.5",
    ]
    flag_values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file(
        "config", None, "", flag_values=flag_values, lock_config=False, sys_argv=argv
    )  # as launch_train.py defines it
    flag_values(argv)
    cfg = load_config(holder.value)
    tp = cfg.train_params
    assert tp.scales == (1, 0.5) and tp.loss_weights.perceptual == (1, 2, 3, 4, 5) and tp.epoch_milestones == (7,)
    assert cfg.dataset_params.frame_shape == (128, 128, 3) and cfg.dataset_params.pairs_list == "pairs.csv"
    assert tp.vgg19_weights == "vgg19.pth" and tp.loss_weights.equivariance_shift == 2.5
    with pytest.raises(ConfigError, match=r"train_params\.scales\[0\]"):
        cfg.train_params.scales = [2]
        validate_config(cfg)
