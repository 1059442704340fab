"""Training loops: a rerun at its last step trains no further, losses go down, a NaN stops
training with the last checkpoint intact (or is skipped, up to a limit), and the perceptual
loss refuses to start without VGG weights. (Resuming: tests/test_kill_training.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ArrayPairs, tiny_training_config, tiny_videos

from mraa_jax.model import MRAA, build_networks
from mraa_jax.training import steps
from mraa_jax.training.avd import build_avd_step
from mraa_jax.training.checkpoints import Checkpoints
from mraa_jax.training.trainer import TrainingDiverged, train_reconstruction


def test_a_rerun_at_the_last_step_trains_no_further(tmp_path):
    """A run killed between its last checkpoint and the model export is rerun with the same
    --max_steps: it saves and returns without another step."""
    from mraa_jax.training.logger import TrainingLogger
    from mraa_jax.training.trainer import _loop

    def no_step(*args):
        raise AssertionError("a step was trained")

    state = steps.TrainState(jnp.int32(3), {"w": jnp.zeros(2)}, {}, {"count": jnp.int32(3)}, jax.random.PRNGKey(0))
    checkpoints = Checkpoints(tmp_path / "checkpoints", every_steps=1)
    logger = TrainingLogger(tmp_path, enabled=False)
    out = _loop(
        "reconstruction",
        no_step,
        state,
        ArrayPairs(tiny_videos(), 2),
        mesh=None,
        checkpoints=checkpoints,
        logger=logger,
        num_epochs=10,
        steps_in_epoch=5,
        max_steps=3,
        progress={"epoch": 0, "step_in_epoch": 3, "data": {"position": 3}},
    )
    assert out is state and checkpoints.latest_step() == 3


@pytest.mark.slow
def test_nan_stops_training_and_keeps_the_last_checkpoint(tmp_path, fixture_dir):
    config = tiny_training_config()
    videos = tiny_videos()

    class PoisonedAfterTwo(ArrayPairs):
        def __next__(self):
            batch = super().__next__()
            if self.position > 2:
                batch["driving"] = batch["driving"] * np.nan
            return batch

    with pytest.raises(TrainingDiverged, match="non-finite loss or gradient at step 3.*last good checkpoint is step 2"):
        train_reconstruction(config, tmp_path, PoisonedAfterTwo(videos, 4), steps_in_epoch=4)
    checkpoints = Checkpoints(tmp_path / "checkpoints" / "reconstruction")
    assert checkpoints.latest_step() == 2
    template = steps.init_train_state(MRAA.random(config).variables, steps.adam(1e-4), jax.random.PRNGKey(0))
    state, progress = checkpoints.restore(template)
    assert int(state.step) == 2 and progress["data"] == {"position": 2}
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state.params))


@pytest.mark.slow
def test_nonfinite_steps_are_skipped_up_to_the_limit(tmp_path, fixture_dir):
    """skip_nonfinite_steps=1: a lone NaN batch is skipped (state unchanged), two in a row stop training."""
    config = tiny_training_config()
    config.train_params.skip_nonfinite_steps = 1
    videos = tiny_videos()

    class Poisoned(ArrayPairs):
        def __next__(self):
            batch = super().__next__()
            if self.position in (3, 5, 6):  # the batches of steps 3, 5 and 6
                batch["driving"] = batch["driving"] * np.nan
            return batch

    with pytest.raises(TrainingDiverged, match="at step 6.*2 such steps in a row, skip_nonfinite_steps allows 1"):
        train_reconstruction(config, tmp_path, Poisoned(videos, 4), steps_in_epoch=8)
    template = steps.init_train_state(MRAA.random(config).variables, steps.adam(1e-4), jax.random.PRNGKey(0))
    state, _ = Checkpoints(tmp_path / "checkpoints" / "reconstruction").restore(template)
    assert int(state.step) == 5
    adam_counts = {int(x) for x in jax.tree_util.tree_leaves(state.opt_state) if np.ndim(x) == 0}
    assert adam_counts == {3}  # the updates of steps 1, 2 and 4 only
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves((state.params, state.batch_stats)))
    log = (tmp_path / "log.txt").read_text()
    assert "step 3: non-finite loss or gradient, update skipped (1 in a row)" in log
    assert "step 5: non-finite loss or gradient, update skipped (1 in a row)" in log


class PoisonedFrom(ArrayPairs):
    """NaN driving frames in the batches of step `first` and every step after it."""

    def __init__(self, videos, batch_size: int, first: int):
        super().__init__(videos, batch_size)
        self.first = first

    def __next__(self):
        batch = super().__next__()
        if self.position >= self.first:
            batch["driving"] = batch["driving"] * np.nan
        return batch


def positions_of_host_reads(monkeypatch, data: ArrayPairs) -> set:
    """The data positions (batches taken) at which the main thread reads a jax.Array's value
    on the host: jax.device_get, float(), int() and item() all read it through `_value`."""
    import threading

    from jax._src.array import ArrayImpl

    positions = set()
    read = ArrayImpl._value.fget

    def counted(array):
        if threading.current_thread() is threading.main_thread():
            positions.add(data.position)
        return read(array)

    monkeypatch.setattr(ArrayImpl, "_value", property(counted))
    return positions


def test_losses_reach_the_host_only_at_log_points(tmp_path, monkeypatch):
    """log_every_steps=4, a checkpoint every 6 steps, 12 steps: the loop reads nothing from
    the device between log points. It reads the step once at the start, the losses at steps
    4, 8 and 12 and before each save (orbax saves the first step too: 1, 6, 12), and the
    state when saving."""
    from mraa_jax.training.logger import TrainingLogger
    from mraa_jax.training.trainer import _loop

    @jax.jit
    def step_fn(state, source, driving):
        total = jnp.mean(jnp.abs(driving - source)) + jnp.sum(state.params["w"])
        return state.replace(step=state.step + 1), {"total": total, "skipped": jnp.float32(0)}

    state = steps.TrainState(jnp.int32(0), {"w": jnp.zeros(2)}, {}, {}, jax.random.PRNGKey(0))
    data = ArrayPairs(tiny_videos(), 2)
    reads = positions_of_host_reads(monkeypatch, data)
    logger = TrainingLogger(tmp_path)
    out = _loop(
        "reconstruction",
        step_fn,
        state,
        data,
        mesh=steps.make_mesh(),
        checkpoints=Checkpoints(tmp_path / "checkpoints", every_steps=6),
        logger=logger,
        num_epochs=1,
        steps_in_epoch=100,
        max_steps=12,
        log_every_steps=4,
    )
    logger.close()
    assert int(out.step) == 12
    assert reads == {0, 1, 4, 6, 8, 12}
    assert Checkpoints(tmp_path / "checkpoints").manager.all_steps() == [1, 6, 12]


@pytest.mark.slow
@pytest.mark.parametrize("first_nan, caught_at, last_good", [(5, 6, 3), (7, 8, 6)])
def test_nan_between_log_points_stops_within_log_every_steps(tmp_path, fixture_dir, first_nan, caught_at, last_good):
    """log_every_steps=4, a checkpoint every 3 steps: a NaN at step 5 is caught at step 6,
    before its checkpoint is saved; one at step 7 at the log point of step 8, before the
    checkpoint of step 9. Either way the last checkpoint is the last good one."""
    config = tiny_training_config()
    config.train_params.checkpoint_every_steps = 3
    config.train_params.log_every_steps = 4
    data = PoisonedFrom(tiny_videos(), 4, first_nan)
    with pytest.raises(TrainingDiverged, match=f"at step {first_nan}.*last good checkpoint is step {last_good}"):
        train_reconstruction(config, tmp_path, data, steps_in_epoch=100)
    assert data.position == caught_at <= first_nan + 4 - 1
    checkpoints = Checkpoints(tmp_path / "checkpoints" / "reconstruction")
    assert checkpoints.latest_step() == last_good
    template = steps.init_train_state(MRAA.random(config).variables, steps.adam(1e-4), jax.random.PRNGKey(0))
    state, progress = checkpoints.restore(template)
    assert int(state.step) == last_good and progress["data"] == {"position": last_good}
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves((state.params, state.batch_stats)))


def test_perceptual_loss_needs_vgg_weights(tmp_path, fixture_dir):
    config = tiny_training_config()
    config.train_params.loss_weights.perceptual = [1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="vgg19_weights is not set.*vgg19-dcbabf67.pth"):
        train_reconstruction(config, tmp_path, ArrayPairs(tiny_videos(), 4), steps_in_epoch=4)


@pytest.mark.slow
def test_replicated_state_is_donated_from_the_first_step():
    """replicate copies into buffers JAX owns: on CPU an array made from host memory may keep
    using it (a view of the caller's jax array, or an aligned numpy array: about 1 in 4 small
    ones), and such a buffer is not donated: the first step then keeps both states (vox256:
    0.76 GB more at its peak). Every replica's buffer is reused by a donating step, and the
    caller's arrays, jax or numpy, stay intact."""
    mesh = steps.make_mesh()
    donating_step = jax.jit(lambda x: x + 1, donate_argnums=0)
    for size in range(1000, 1060):  # many sizes: host allocations land at many alignments
        for mine in (jnp.arange(float(size)), np.arange(float(size), dtype=np.float32)):
            replica = steps.replicate(mesh, {"x": mine})["x"]
            buffers = [shard.data.unsafe_buffer_pointer() for shard in replica.addressable_shards]
            out = donating_step(replica)
            assert [shard.data.unsafe_buffer_pointer() for shard in out.addressable_shards] == buffers, size
            np.testing.assert_array_equal(mine, np.arange(float(size)))


@pytest.fixture(scope="module")
def tiny_model(fixture_dir):
    config = tiny_training_config()
    return config, MRAA.random(config)


@pytest.mark.slow
def test_short_training_lowers_reconstruction_l1(tiny_model):
    """40 steps on one fixed batch: the L1 falls below 0.8 of its first value."""
    config, model = tiny_model
    optimizer = steps.adam(1e-3)
    mesh = steps.make_mesh()
    state = steps.replicate(
        mesh, steps.init_train_state(jax.device_get(model.variables), optimizer, jax.random.PRNGKey(0))
    )
    step = steps.build_reconstruction_step(
        build_networks(config.model_params), optimizer, config.train_params.to_dict(), mesh, False
    )
    batch = next(ArrayPairs(tiny_videos(), 4))
    l1 = []
    for _ in range(40):
        state, metrics = step(state, {}, *steps.shard_batch(mesh, batch["source"], batch["driving"]))
        l1.append(float(metrics["l1"]))
    assert np.mean(l1[-5:]) < 0.8 * l1[0], l1


@pytest.mark.slow
def test_avd_stage_lowers_its_loss(tiny_model):
    """30 AVD steps on one batch: the loss falls below 0.7 of its first value."""
    config, model = tiny_model
    ap = config.train_avd_params.to_dict()
    optimizer = steps.adam(1e-3)
    mesh = steps.make_mesh()
    variables = jax.device_get(model.variables)
    state = steps.replicate(
        mesh, steps.init_train_state(variables, optimizer, jax.random.PRNGKey(0), names=("avd_network",))
    )
    step = build_avd_step(build_networks(config.model_params), optimizer, ap, mesh)
    region_predictor = steps.replicate(mesh, variables["region_predictor"])
    batch = next(ArrayPairs(tiny_videos(), 4))
    losses = []
    for _ in range(30):
        state, metrics = step(state, region_predictor, *steps.shard_batch(mesh, batch["source"], batch["driving"]))
        losses.append(float(metrics["avd"]))
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses


@pytest.mark.slow
def test_fine_tuning_a_converted_original_carries_adam_moments_and_epoch(tmp_path, converted_dir):
    """The converted fixture (epoch 99, Adam after one step) resumes at epoch 100 with Adam's count 1 -> 2."""
    import optax

    from mraa_jax.model_dir import load_model_config

    config = load_model_config(converted_dir)
    config.train_params.num_epochs = 101
    config.train_params.loss_weights.l1 = 1.0
    videos = tiny_videos(size=64)
    state = train_reconstruction(
        config, tmp_path, ArrayPairs(videos, 2), steps_in_epoch=1, init_from=str(converted_dir)
    )
    adam = [
        s
        for s in jax.tree_util.tree_leaves(state.opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    ][0]
    assert int(adam.count) == 2
    assert int(state.step) == 1  # one epoch (100) was left to train
    log = (tmp_path / "log.txt").read_text()
    assert log.startswith("00100) ")
