"""The converter: both torch file formats, every tensor mapped, clear refusals, model directories."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import mraa_jax
from mraa_jax import model_dir
from mraa_jax.config import load_config
from mraa_jax.convert import ConversionError, convert_checkpoint, main, read_torch_checkpoint

torch = pytest.importorskip("torch", reason="the converter needs the `convert` extra (torch)")


@pytest.fixture(scope="module")
def checkpoint(fixture_dir):
    return read_torch_checkpoint(fixture_dir / "checkpoint.pth")


@pytest.fixture(scope="module")
def config(fixture_dir):
    return load_config(fixture_dir / "config.yaml")


def assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_model_directory_contents(converted_dir):
    assert model_dir.is_model_dir(converted_dir)
    meta = json.loads((converted_dir / "meta.json").read_text())
    assert meta["epoch_reconstruction"] == 99 and meta["epoch_avd"] == 29
    assert meta["random_init"] == []
    assert (converted_dir / "optimizer").is_dir()


def test_every_tensor_is_converted(checkpoint, config, converted_dir):
    """Each tensor of the checkpoint lands at its mapped place, transposed to our layout."""
    variables = model_dir.load_variables(converted_dir)
    kernel = variables["generator"]["params"]["pixelwise_flow_predictor"]["hourglass"]["encoder"]["down_blocks_0"][
        "conv"
    ]["kernel"]
    np.testing.assert_array_equal(
        kernel,
        np.transpose(
            checkpoint["generator"]["pixelwise_flow_predictor.hourglass.encoder.down_blocks.0.conv.weight"],
            (2, 3, 1, 0),
        ),
    )
    linear = variables["avd_network"]["params"]["decoder_9"]["kernel"]
    np.testing.assert_array_equal(linear, checkpoint["avd_network"]["decoder.9.weight"].T)
    running_var = variables["region_predictor"]["batch_stats"]["predictor"]["decoder"]["up_blocks_1"]["norm"]["var"]
    np.testing.assert_array_equal(
        running_var, checkpoint["region_predictor"]["predictor.decoder.up_blocks.1.norm.running_var"]
    )
    for network in ("generator", "region_predictor", "bg_predictor", "avd_network"):
        stored = [k for k in checkpoint[network] if not k.endswith(("num_batches_tracked", "down.weight"))]
        assert len(stored) == len(jax.tree_util.tree_leaves(variables[network]))


def test_zip_and_legacy_formats_agree(fixture_dir, tmp_path, checkpoint):
    raw = torch.load(fixture_dir / "checkpoint.pth", map_location="cpu", weights_only=True)
    zip_path = tmp_path / "zip.pth"
    torch.save(raw, zip_path)  # torch >= 1.6 writes the zip format by default
    import zipfile

    assert zipfile.is_zipfile(zip_path) and not zipfile.is_zipfile(fixture_dir / "checkpoint.pth")
    assert_trees_equal(read_torch_checkpoint(zip_path)["generator"], checkpoint["generator"])


def test_adam_moments_are_carried_over(checkpoint, converted_dir):
    optimizer = model_dir.load_optimizer(converted_dir)
    adam = optimizer["reconstruction"]
    assert int(adam["step"]) == 1
    # Parameter 0 of the original optimiser is the generator's first parameter.
    first = checkpoint["optimizer_reconstruction"]["state"][0]
    mu = adam["generator"]["mu"]["pixelwise_flow_predictor"]["hourglass"]["encoder"]["down_blocks_0"]["conv"]["kernel"]
    np.testing.assert_array_equal(mu, np.transpose(first["exp_avg"], (2, 3, 1, 0)))
    # The last one is the background predictor's fc bias.
    last = checkpoint["optimizer_reconstruction"]["state"][105]
    np.testing.assert_array_equal(adam["bg_predictor"]["nu"]["fc"]["bias"], last["exp_avg_sq"])
    assert "avd" not in optimizer  # the fixture's AVD optimiser has an empty state


def test_mismatched_checkpoint_lists_every_problem(checkpoint, config):
    broken = {k: (dict(v) if isinstance(v, dict) else v) for k, v in checkpoint.items()}
    del broken["generator"]["final.bias"]
    broken["generator"]["final.extra"] = np.zeros(3, np.float32)
    broken["region_predictor"]["regions.weight"] = np.zeros((4, 11, 7, 7), np.float32)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(broken, config, "broken.pth")
    message = str(error.value)
    assert "broken.pth does not fit the config" in message
    assert "missing: generator.final.bias (3,)" in message
    assert "unexpected: generator.final.extra" in message
    assert "mis-shaped: region_predictor.regions.weight is (4, 11, 7, 7), the config expects (5, 11, 7, 7)" in message


def test_command_line_refuses_a_checkpoint_of_another_config(fixture_dir, tmp_path, capsys):
    code = main(
        [
            "--config",
            "configs/vox256.py",
            "--checkpoint",
            str(fixture_dir / "checkpoint.pth"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    assert "mis-shaped" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten(fixture_dir, converted_dir, capsys):
    args = [
        "--config",
        str(fixture_dir / "config.yaml"),
        "--checkpoint",
        str(fixture_dir / "checkpoint.pth"),
        "--output",
        str(converted_dir),
    ]
    before = sorted(p.name for p in converted_dir.rglob("*"))
    assert main(args) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in converted_dir.rglob("*")) == before


def test_first_stage_checkpoint_gets_a_random_avd(checkpoint, config):
    stage_one = {k: v for k, v in checkpoint.items() if k not in ("avd_network", "optimizer_avd", "epoch_avd")}
    variables, _, meta = convert_checkpoint(stage_one, config)
    assert meta["random_init"] == ["avd_network"]
    assert "decoder_9" in variables["avd_network"]["params"]


def test_load_pth_directly_equals_converted_directory(fixture_dir, converted_dir, fixture_model):
    direct = mraa_jax.load(fixture_dir / "checkpoint.pth", config=fixture_dir / "config.yaml")
    assert_trees_equal(direct.variables, fixture_model.variables)


def test_load_errors(fixture_dir, tmp_path):
    with pytest.raises(ValueError, match="needs its config"):
        mraa_jax.load(fixture_dir / "checkpoint.pth")
    with pytest.raises(mraa_jax.InputError, match="no model"):
        mraa_jax.load(tmp_path / "nothing")
    with pytest.raises(mraa_jax.InputError, match="not a model directory"):
        mraa_jax.load(tmp_path)
    not_torch = tmp_path / "bad.pth"
    not_torch.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="bad.pth: not a readable PyTorch checkpoint"):
        read_torch_checkpoint(not_torch)
