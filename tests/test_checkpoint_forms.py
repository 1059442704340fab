"""Original checkpoints in every form the original's code and its users produce, each made here
with torch from the fixture checkpoint: each loads, animates the fixture clip as the original
did (outputs.npz within 1e-4) and, where it has an optimiser state, fine-tunes one step."""

from __future__ import annotations

import functools
import warnings
from unittest import mock

import jax
import numpy as np
import optax
import pytest
from conftest import FIXTURE, ArrayPairs, nhwc, tiny_videos

import mraa_jax
from mraa_jax import model_dir
from mraa_jax.config import load_config
from mraa_jax.convert import (
    ConversionError,
    convert_file,
    flat_leaves,
    main,
    read_torch_checkpoint,
    torch_to_flax,
    torch_to_flax_layout,
)

torch = pytest.importorskip("torch", reason="original checkpoints need the `convert` extra (torch)")
ATOL = 1e-4
OPTIMIZER_KEYS = ("optimizer_reconstruction", "optimizer_avd")


def _partial_adam(raw: dict) -> dict:
    """Adam state for two parameters in three (torch creates it at a parameter's first gradient)."""
    optimizer = dict(raw["optimizer_reconstruction"])
    optimizer["state"] = {i: entry for i, entry in optimizer["state"].items() if i % 3}
    return dict(raw, optimizer_reconstruction=optimizer)


def _data_parallel(raw: dict) -> dict:
    networks = ("generator", "region_predictor", "bg_predictor", "avd_network")
    return {k: ({f"module.{name}": t for name, t in v.items()} if k in networks else v) for k, v in raw.items()}


FORMS = {
    "as published": lambda raw: raw,
    "partial Adam state": _partial_adam,
    "no optimizer": lambda raw: {k: v for k, v in raw.items() if k not in OPTIMIZER_KEYS},
    "first stage only": lambda raw: {
        k: v for k, v in raw.items() if k not in ("avd_network", "optimizer_avd", "epoch_avd")
    },
    "DataParallel names": _data_parallel,
    "saved on CUDA": lambda raw: raw,
}


def save(checkpoint: dict, path, form: str, file_format: str):
    """torch.save in the legacy (torch < 1.6) or zip format; 'saved on CUDA' tags every storage cuda:0."""
    import torch.serialization

    location = (lambda storage: "cuda:0") if form == "saved on CUDA" else torch.serialization.location_tag
    with mock.patch.object(torch.serialization, "location_tag", location):
        torch.save(checkpoint, path, _use_new_zipfile_serialization=file_format == "zip")
    return path


@pytest.fixture(scope="module")
def raw(fixture_dir):
    return torch.load(fixture_dir / "checkpoint.pth", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def config(fixture_dir):
    return load_config(fixture_dir / "config.yaml")


@pytest.fixture(scope="module")
def clip(fixture_inputs):
    return nhwc(fixture_inputs["source"])[0], nhwc(fixture_inputs["clip"])


def _adam_state(opt_state) -> optax.ScaleByAdamState:
    return next(
        s
        for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    )


# Every form in the zip format torch writes now; the published files' legacy format for the
# published form and for files saved on GPUs (as torch 1.x wrote them).
CASES = [(form, "zip") for form in FORMS] + [("as published", "legacy"), ("saved on CUDA", "legacy")]


@pytest.mark.slow
@pytest.mark.parametrize("form, file_format", CASES, ids=[f"{f}-{t}" for f, t in CASES])
def test_checkpoint_form_loads_and_animates(
    form, file_format, raw, config, clip, fixture_outputs, fixture_model, tmp_path
):
    path = save(FORMS[form](raw), tmp_path / "model.pth", form, file_format)
    if form == "saved on CUDA":  # the file really names a CUDA device
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inference reads no optimiser, so nothing to warn about
        model = mraa_jax.load(path, config)
    for network in ("generator", "region_predictor", "bg_predictor"):
        for key, leaf in flat_leaves(fixture_model.variables[network]).items():
            np.testing.assert_array_equal(
                flat_leaves(model.variables[network])[key], leaf, err_msg=f"{form}: {network} {key}"
            )
    source, frames = clip
    mode = "relative" if form == "first stage only" else "avd"
    video = model.animate(source, frames, mode=mode, chunk_size=6)
    expected = nhwc(fixture_outputs[f"anim.{mode}.prediction"])
    assert float(np.max(np.abs(np.asarray(video) - expected))) <= ATOL
    if form == "first stage only":
        assert model.untrained == ("avd_network",)
        with pytest.raises(mraa_jax.InputError, match="model.pth: the checkpoint has no AVD network"):
            model.animate(source, frames, mode="avd")
        standard = model.animate(source, frames, mode="standard", chunk_size=6)
        assert float(np.max(np.abs(np.asarray(standard) - nhwc(fixture_outputs["anim.standard.prediction"])))) <= ATOL


def test_partial_adam_state_maps_by_param_groups(raw, config, tmp_path):
    """Moments where the checkpoint has them (by the indices of param_groups), zeros where it has none."""
    path = save(_partial_adam(raw), tmp_path / "partial.pth", "partial Adam state", "zip")
    checkpoint = read_torch_checkpoint(path)
    _, moments, _ = convert_file(path, config)
    optimizer = checkpoint["optimizer_reconstruction"]
    order = optimizer["param_groups"][0]["params"]
    names = [
        (n, k)
        for n in ("generator", "region_predictor", "bg_predictor")
        for k in checkpoint[n]
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked", "down.weight"))
    ]
    assert len(names) == len(order) > len(optimizer["state"])
    adam = moments["reconstruction"]
    for index, (network, name) in zip(order, names):
        _, leaf_path = torch_to_flax(name, checkpoint[network][name].ndim)
        for ours, theirs in (("mu", "exp_avg"), ("nu", "exp_avg_sq")):
            moment = functools.reduce(dict.__getitem__, leaf_path, adam[network][ours])
            if index in optimizer["state"]:
                np.testing.assert_array_equal(moment, torch_to_flax_layout(optimizer["state"][index][theirs]))
            else:
                assert moment.shape == torch_to_flax_layout(checkpoint[network][name]).shape and not np.any(moment)
    assert adam["step"] == 1


@pytest.mark.slow
def test_converted_partial_checkpoint_reproduces_the_fixture(raw, tmp_path, fixture_inputs, fixture_outputs):
    """The converter on the fixture with Adam state for a subset of parameters: the model directory
    it writes computes the original's outputs (outputs.npz) within 1e-4, and keeps the moments."""
    path = save(_partial_adam(raw), tmp_path / "partial.pth", "partial Adam state", "legacy")
    assert (
        main(
            [
                "--config",
                str(FIXTURE / "config.yaml"),
                "--checkpoint",
                str(path),
                "--output",
                str(tmp_path / "converted"),
            ]
        )
        == 0
    )
    assert model_dir.load_optimizer(tmp_path / "converted")["reconstruction"]["step"] == 1
    model = mraa_jax.load(tmp_path / "converted")
    source, driving, frames = (nhwc(fixture_inputs[k]) for k in ("source", "driving", "clip"))
    ours = {"bg.params": model.background(source, driving)}
    for name, images in (("source", source), ("driving", driving)):
        params = model.regions(images)
        ours.update({f"rp.{name}.{field}": getattr(params, field) for field in ("shift", "covar", "affine")})
    sp, dp = model.regions(source), model.regions(driving)
    ours.update({f"avd.{field}": getattr(model.avd(sp, dp), field) for field in ("shift", "affine")})
    for mode in ("standard", "relative", "avd"):
        ours[f"anim.{mode}.prediction"] = np.moveaxis(
            np.asarray(model.animate(source[0], frames, mode=mode, chunk_size=6)), -1, -3
        )
    ours["gen.prediction"] = np.moveaxis(
        np.asarray(model.generate(source, sp, dp, ours["bg.params"])["prediction"]), -1, -3
    )
    for key, value in ours.items():
        assert float(np.max(np.abs(np.asarray(value) - fixture_outputs[key]))) <= ATOL, key


def _fine_tune_config():
    config = load_config(FIXTURE / "config.yaml")
    config.train_params.num_epochs = 101  # the fixture is at epoch 99: one epoch left
    config.train_params.loss_weights.l1 = 1.0
    return config


@pytest.mark.slow
def test_fine_tune_from_a_partial_adam_checkpoint(raw, tmp_path):
    """launch_train.py --init_from file.pth: the converted moments (count 1 -> 2) and the epoch carry over."""
    from mraa_jax.training.trainer import train_reconstruction

    path = save(_partial_adam(raw), tmp_path / "model.pth", "partial Adam state", "zip")
    state = train_reconstruction(
        _fine_tune_config(),
        tmp_path / "run",
        ArrayPairs(tiny_videos(size=64), 2),
        steps_in_epoch=1,
        init_from=str(path),
    )
    assert int(state.step) == 1 and int(_adam_state(state.opt_state).count) == 2
    assert (tmp_path / "run" / "log.txt").read_text().startswith("00100) ")
    assert model_dir.load_meta(tmp_path / "run" / "model")["random_init"] == []


@pytest.fixture(scope="module")
def training_step():
    """(config, optimizer, mesh, one jitted reconstruction step) of the fine-tuning config, compiled once."""
    from mraa_jax.model import build_networks
    from mraa_jax.training import steps

    config = _fine_tune_config()
    optimizer = steps.adam(
        config.train_params.lr, config.train_params.epoch_milestones
    )  # as train_reconstruction's, one step an epoch
    mesh = steps.make_mesh()
    step = steps.build_reconstruction_step(
        build_networks(config.model_params), optimizer, config.train_params.to_dict(), mesh, False
    )
    return config, optimizer, mesh, step


@pytest.mark.slow
@pytest.mark.parametrize(
    "form", ["as published", "first stage only", "DataParallel names", "saved on CUDA", "no optimizer"]
)
def test_fine_tune_one_step_from_each_form(form, raw, tmp_path, training_step):
    """The trainer's initial state from each form (train_reconstruction's first lines), then one step:
    converted Adam moments (count 1 -> 2), or fresh ones (0 -> 1) where the file has none."""
    from mraa_jax.training import steps
    from mraa_jax.training.reconstruction import RECONSTRUCTION_NETWORKS
    from mraa_jax.training.trainer import initial_variables, with_adam_moments

    config, optimizer, mesh, step = training_step
    variables, moments, meta = initial_variables(
        config, str(save(FORMS[form](raw), tmp_path / "model.pth", form, "zip")), seed=0
    )
    state = steps.init_train_state(variables, optimizer, jax.random.PRNGKey(0))
    if moments:
        state = state.replace(
            opt_state=with_adam_moments(state.opt_state, moments["reconstruction"], RECONSTRUCTION_NETWORKS)
        )
    batch = next(ArrayPairs(tiny_videos(size=64), 2))
    state, metrics = step(
        steps.replicate(mesh, state),
        steps.replicate(mesh, {}),
        *steps.shard_batch(mesh, batch["source"], batch["driving"]),
    )
    assert float(metrics["skipped"]) == 0.0 and np.isfinite(float(metrics["total"]))
    assert int(_adam_state(state.opt_state).count) == (1 if form == "no optimizer" else 2)
    assert meta["random_init"] == (["avd_network"] if form == "first stage only" else [])


def test_broken_optimizer_costs_a_warning_only(raw, config, tmp_path, capsys):
    """An optimiser state that does not fit the networks: inference never reads it, the converter
    and fine-tuning warn and go on without it."""
    broken = dict(raw)
    broken["optimizer_reconstruction"] = dict(raw["optimizer_reconstruction"])
    group = dict(raw["optimizer_reconstruction"]["param_groups"][0])
    group["params"] = group["params"][:-5]
    broken["optimizer_reconstruction"]["param_groups"] = [group]
    path = save(broken, tmp_path / "broken.pth", "as published", "zip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mraa_jax.load(path, config)
    with pytest.warns(
        UserWarning, match="optimizer_reconstruction: its param_groups list 101 parameters.*fresh Adam moments"
    ):
        _, moments, meta = convert_file(path, config)
    assert moments == {} and len(meta["optimizer_warnings"]) == 1
    assert (
        main(["--config", str(FIXTURE / "config.yaml"), "--checkpoint", str(path), "--output", str(tmp_path / "out")])
        == 0
    )
    assert "warning:" in capsys.readouterr().err
    assert model_dir.is_model_dir(tmp_path / "out") and model_dir.load_optimizer(tmp_path / "out") is None


def test_pickled_objects_are_refused(raw, tmp_path):
    """weights_only=True always: a file that needs arbitrary Python objects (here the training
    options, as scripts often add) is refused, naming the file and the object."""
    import argparse

    path = tmp_path / "pickled.pth"
    torch.save(dict(raw, options=argparse.Namespace(lr=2e-4)), path)
    with pytest.raises(
        ConversionError,
        match=r"pickled.pth: refused: loading it would run code from the file \(it pickles argparse.Namespace",
    ):
        read_torch_checkpoint(path)
