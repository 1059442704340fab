"""The training loops of both stages: epochs, checkpoints with resume, logs, NaN guard.

Data comes from any iterator of process-local batches ({'source', 'driving'}:
(B_local, H, W, C) float32 in [0, 1]) with `get_state()` / `set_state(state)`
returning and taking a JSON-serialisable position, so that a resumed run reads
on exactly where it stopped.

Workdir layout:
    checkpoints/reconstruction/<step>/   orbax checkpoints of the reconstruction stage
    checkpoints/avd/<step>/              orbax checkpoints of the AVD stage
    model/                               model directory of all four networks (mraa_jax.load)
    log.txt, tensorboard/, train-vis/    logs
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mraa_jax import model_dir
from mraa_jax.convert import ORIGINAL_SUFFIXES, convert_file
from mraa_jax.losses import EquivarianceTransform
from mraa_jax.model import NETWORKS, build_networks, config_frame_shape, init_variables
from mraa_jax.training import steps
from mraa_jax.training.avd import build_avd_step
from mraa_jax.training.checkpoints import Checkpoints
from mraa_jax.training.logger import TrainingLogger
from mraa_jax.training.reconstruction import RECONSTRUCTION_NETWORKS
from mraa_jax.vgg_weights import WHERE_TO_GET, load_vgg19_params
from mraa_jax.visualize import visualize


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left in place."""


def perceptual_weights(train_params) -> dict:
    """VGG-19 params for the perceptual loss ({} when its weights are all 0); refuses to start without them."""
    if not any(train_params.loss_weights.perceptual):
        return {}
    path = train_params.vgg19_weights
    if not path:
        raise ValueError(
            f"train_params.loss_weights.perceptual is non-zero but train_params.vgg19_weights is not set; it should name {WHERE_TO_GET}"
        )
    return load_vgg19_params(path)


class NonFiniteGuard:
    """Allows at most `limit` steps in a row whose update the step skipped for a NaN or
    infinite loss or gradient (the step leaves the state unchanged then); one more stops
    training with TrainingDiverged, leaving the last good checkpoint in place."""

    def __init__(self, limit: int, checkpoints: Checkpoints):
        self.limit = int(limit)
        self.checkpoints = checkpoints
        self.in_a_row = 0

    def skipped(self, metrics: dict[str, float], step: int) -> bool:
        """Whether `step` was skipped (pops the step's 'skipped' flag); raises past the limit."""
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if not (metrics.pop("skipped", 0.0) or bad):
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        if self.in_a_row > self.limit:
            latest = self.checkpoints.latest_step()
            kept = (
                f"the last good checkpoint is step {latest} in {self.checkpoints.directory}"
                if latest is not None
                else "no checkpoint was written yet"
            )
            raise TrainingDiverged(
                f"non-finite loss or gradient at step {step}: {bad or 'a gradient'}; training stopped "
                f"({self.in_a_row} such steps in a row, skip_nonfinite_steps allows {self.limit}), {kept}"
            )
        return True


def _check_losses(pending: list, guard: NonFiniteGuard, logger: TrainingLogger, bar) -> None:
    """Fetch the losses of the unchecked steps `pending` ([(step, device metrics)]) in one
    transfer, run the guard on them and log them in step order, and empty `pending`.

    The guard raises at the first step past its limit, before anything later is logged or saved.
    """
    fetched = jax.device_get(pending)
    pending.clear()
    for step, metrics in fetched:
        metrics = {k: float(v) for k, v in metrics.items()}
        if guard.skipped(metrics, step):
            logger.note(f"step {step}: non-finite loss or gradient, update skipped ({guard.in_a_row} in a row)")
        else:
            logger.step(step, metrics)
    bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()})


def _next_position(progress: dict, steps_in_epoch: int, data_state) -> dict:
    position = progress["step_in_epoch"] + 1
    if position == steps_in_epoch:
        return {"epoch": progress["epoch"] + 1, "step_in_epoch": 0, "data": data_state}
    return {"epoch": progress["epoch"], "step_in_epoch": position, "data": data_state}


def run_stage(
    name: str,
    step_fn: Callable,
    state: steps.TrainState,
    data: Iterator,
    *,
    workdir: Path,
    checkpoints: Checkpoints,
    **loop_args,
) -> steps.TrainState:
    """`_loop` with the stage's logger, closing it and the checkpoints however training ends."""
    logger = TrainingLogger(workdir, enabled=jax.process_index() == 0)
    try:
        return _loop(name, step_fn, state, data, checkpoints=checkpoints, logger=logger, **loop_args)
    finally:
        logger.close()
        checkpoints.close()


def _loop(
    name: str,
    step_fn: Callable,
    state: steps.TrainState,
    data: Iterator,
    *,
    mesh,
    checkpoints: Checkpoints,
    logger: TrainingLogger,
    num_epochs: int,
    steps_in_epoch: int,
    frozen_args: tuple = (),
    picture_fn: Callable | None = None,
    max_steps: int | None = None,
    progress: dict | None = None,
    hook: Callable | None = None,
    skip_nonfinite_steps: int = 0,
    log_every_steps: int = 100,
) -> steps.TrainState:
    """Train until `num_epochs` (or `max_steps` total steps); resumes from `progress` if given.

    Nothing comes back to the host per step: the losses stay on the device until a log
    point (every `log_every_steps` steps, before each checkpoint is saved, at the end of an
    epoch and of training), where they are fetched at once, logged and checked by the guard.
    A non-finite loss thus stops training within `log_every_steps` steps, and no checkpoint
    is saved from a state whose losses were not all checked.

    hook: called as hook(state, step, metrics) before the first step (metrics empty) and
    after every step, with the step's metrics still on the device and not yet checked
    (their 'skipped' is 1.0 for a skipped step); the scalars it returns are logged (e.g. a
    HeldOutTracker).
    skip_nonfinite_steps: see NonFiniteGuard (0: stop at the first non-finite step).
    """
    progress = progress or {"epoch": 0, "step_in_epoch": 0, "data": data.get_state()}
    step = int(state.step)  # counted on the host from here on
    if max_steps is not None and step >= max_steps:  # resumed after the last step (killed before the end)
        _save_final(checkpoints, state, progress)
        return state
    guard = NonFiniteGuard(skip_nonfinite_steps, checkpoints)
    is_main = jax.process_index() == 0
    batch = None
    if hook is not None:
        logger.scalars(step, hook(state, step, {}))
    stopped = False
    pending = []  # (step, metrics on the device) since the last log point
    while progress["epoch"] < num_epochs and not stopped:
        epoch = progress["epoch"]
        bar = tqdm(
            total=steps_in_epoch,
            initial=progress["step_in_epoch"],
            desc=f"{name} epoch {epoch}",
            disable=not is_main,
            leave=False,
        )
        while progress["epoch"] == epoch:
            batch = next(data)
            source, driving = steps.shard_batch(mesh, batch["source"], batch["driving"])
            state, metrics = step_fn(state, *frozen_args, source, driving)
            step += 1
            pending.append((step, metrics))
            progress = _next_position(progress, steps_in_epoch, data.get_state())
            stopped = max_steps is not None and step >= max_steps  # the (partial) epoch is still logged and pictured
            save = checkpoints.due(step)
            if save or stopped or step % log_every_steps == 0 or progress["epoch"] != epoch:
                _check_losses(pending, guard, logger, bar)
            if hook is not None:
                logger.scalars(step, hook(state, step, metrics))
            bar.update()
            if save:
                checkpoints.save(step, state, progress)
            if stopped:
                break
        bar.close()
        picture = picture_fn(state, batch) if (picture_fn is not None and is_main) else None
        logger.end_epoch(epoch, step, picture, stage="avd-" if name == "avd" else "")
    _save_final(checkpoints, state, progress)
    return state


def _save_final(checkpoints: Checkpoints, state, progress: dict) -> None:
    """Save the state unless its step is already saved, and wait until it is on disk."""
    checkpoints.wait()
    step = int(state.step)
    if checkpoints.latest_step() != step:
        checkpoints.save(step, state, progress, force=True)
    checkpoints.wait()


def _resume(workdir: Path, stage: str, params, state, mesh, data: Iterator):
    """(checkpoints, state, progress) of a stage: its checkpoint manager and, when it holds a
    checkpoint, the latest state and progress (the data iterator moved to its position);
    else the given state and None."""
    checkpoints = Checkpoints(workdir / "checkpoints" / stage, params.checkpoint_every_steps, params.keep_checkpoints)
    if checkpoints.latest_step() is None:
        return checkpoints, state, None
    restored, progress = checkpoints.restore(state)
    data.set_state(progress["data"])
    return checkpoints, steps.replicate(mesh, jax.device_get(restored)), progress


def with_adam_moments(opt_state, moments: dict, names) -> object:
    """optax Adam state carrying converted moments {network: {'mu', 'nu'}} and 'step' (fine-tuning)."""
    count = jnp.asarray(int(moments["step"]), jnp.int32)

    def replace(node):
        if isinstance(node, optax.ScaleByAdamState):
            mu = {n: moments[n]["mu"] for n in names}
            nu = {n: moments[n]["nu"] for n in names}
            return optax.ScaleByAdamState(
                count=count, mu=jax.tree_util.tree_map(jnp.asarray, mu), nu=jax.tree_util.tree_map(jnp.asarray, nu)
            )
        if isinstance(node, optax.ScaleByScheduleState):
            return optax.ScaleByScheduleState(count=count)
        return node

    return jax.tree_util.tree_map(
        replace, opt_state, is_leaf=lambda n: isinstance(n, (optax.ScaleByAdamState, optax.ScaleByScheduleState))
    )


def initial_variables(config, init_from: str | None, seed: int) -> tuple[dict, dict | None, dict]:
    """(variables, converted optimiser moments or None, meta): from a model directory, an
    original .pth checkpoint (converted for `config`), or random."""
    if init_from and Path(init_from).suffix in ORIGINAL_SUFFIXES:
        return convert_file(init_from, config, optimizer=True)  # an optimiser state that does not fit: a warning
    if init_from:
        return model_dir.load_variables(init_from), model_dir.load_optimizer(init_from), model_dir.load_meta(init_from)
    networks = build_networks(config.model_params)
    variables = jax.device_get(init_variables(networks, jax.random.PRNGKey(seed), config_frame_shape(config)))
    return variables, None, {}


def train_reconstruction(
    config,
    workdir,
    data: Iterator,
    *,
    steps_in_epoch: int,
    init_from: str | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    hook: Callable | None = None,
) -> steps.TrainState:
    """The first stage: region predictor, background predictor and generator, one Adam.

    steps_in_epoch: optimiser steps per epoch (the data pipeline's `steps_per_epoch`).
    init_from: a model directory (converted original or our own), or an original .pth
    checkpoint, to fine-tune; its Adam moments come along where it has them.
    hook: see `_loop` (e.g. a HeldOutTracker).
    """
    tp = config.train_params
    workdir = Path(workdir)
    vgg_params = perceptual_weights(tp)
    mesh = steps.make_mesh()
    sync_bn = tp.use_sync_bn
    networks = build_networks(config.model_params, bn_axis_name=steps.AXIS if sync_bn else None)
    optimizer = steps.adam(tp.lr, [m * steps_in_epoch for m in tp.epoch_milestones])
    variables, moments, meta = initial_variables(config, init_from, seed)
    state = steps.init_train_state(variables, optimizer, jax.random.PRNGKey(seed + 1))
    if moments and "reconstruction" in moments:
        state = state.replace(
            opt_state=with_adam_moments(state.opt_state, moments["reconstruction"], RECONSTRUCTION_NETWORKS)
        )
    checkpoints, state, progress = _resume(workdir, "reconstruction", tp, steps.replicate(mesh, state), mesh, data)
    if progress is None and "epoch_reconstruction" in meta:
        progress = {"epoch": meta["epoch_reconstruction"] + 1, "step_in_epoch": 0, "data": data.get_state()}
    state = run_stage(
        "reconstruction",
        steps.build_reconstruction_step(networks, optimizer, tp.to_dict(), mesh, sync_bn),
        state,
        data,
        workdir=workdir,
        checkpoints=checkpoints,
        mesh=mesh,
        num_epochs=tp.num_epochs,
        steps_in_epoch=steps_in_epoch,
        frozen_args=(steps.replicate(mesh, vgg_params),),
        picture_fn=make_reconstruction_picture(build_networks(config.model_params), config),
        max_steps=max_steps,
        progress=progress,
        hook=hook,
        skip_nonfinite_steps=tp.skip_nonfinite_steps,
        log_every_steps=tp.log_every_steps,
    )
    avd_is_random = not init_from or "avd_network" in meta.get("random_init", [])
    export_model(
        workdir / "model",
        config,
        state,
        {"avd_network": variables["avd_network"]},
        {"random_init": ["avd_network"] if avd_is_random else []},
    )
    return state


def train_avd(
    config, workdir, data: Iterator, *, steps_in_epoch: int, max_steps: int | None = None, seed: int = 0
) -> steps.TrainState:
    """The second stage: the AVD network on a frozen region predictor from workdir/model."""
    ap = config.train_avd_params
    workdir = Path(workdir)
    if not model_dir.is_model_dir(workdir / "model"):
        raise FileNotFoundError(
            f"{workdir / 'model'}: the AVD stage needs a trained first stage (run --mode train first)"
        )
    variables = model_dir.load_variables(workdir / "model")
    mesh = steps.make_mesh()
    networks = build_networks(config.model_params)
    optimizer = steps.adam(ap.lr, [m * steps_in_epoch for m in ap.epoch_milestones])
    state = steps.replicate(
        mesh, steps.init_train_state(variables, optimizer, jax.random.PRNGKey(seed + 2), names=("avd_network",))
    )
    checkpoints, state, progress = _resume(workdir, "avd", ap, state, mesh, data)
    state = run_stage(
        "avd",
        build_avd_step(networks, optimizer, ap.to_dict(), mesh),
        state,
        data,
        workdir=workdir,
        checkpoints=checkpoints,
        mesh=mesh,
        num_epochs=ap.num_epochs,
        steps_in_epoch=steps_in_epoch,
        frozen_args=(steps.replicate(mesh, variables["region_predictor"]),),
        max_steps=max_steps,
        progress=progress,
        skip_nonfinite_steps=ap.skip_nonfinite_steps,
        log_every_steps=ap.log_every_steps,
    )
    trained = {n: variables[n] for n in NETWORKS if n != "avd_network"}
    export_model(workdir / "model", config, state, trained, {"random_init": []}, overwrite=True)
    return state


def export_model(
    path, config, state: steps.TrainState, other_networks: dict, meta: dict, overwrite: bool = True
) -> None:
    """Write a model directory of the state's networks plus `other_networks` (process 0 only)."""
    if jax.process_index() != 0:
        return
    params, batch_stats = jax.device_get((state.params, state.batch_stats))
    variables = {n: {"params": params[n], "batch_stats": batch_stats[n]} for n in params}
    variables.update({n: v for n, v in other_networks.items() if n not in variables})
    model_dir.save_model_dir(path, config, variables, meta=dict(meta, step=int(state.step)), overwrite=overwrite)


def make_reconstruction_picture(networks, config) -> Callable:
    """(state, batch) -> the visualiser's grid of an eval-mode forward on the batch's first rows."""
    kp_size = config.visualizer_params.kp_size
    tp = config.train_params.transform_params

    @jax.jit
    def forward(variables, source, driving):
        source_params = networks.region_predictor.apply(variables["region_predictor"], source)
        driving_params = networks.region_predictor.apply(variables["region_predictor"], driving)
        bg = networks.bg_predictor.apply(variables["bg_predictor"], source, driving)
        out = networks.generator.apply(variables["generator"], source, driving_params, source_params, bg)
        transform = EquivarianceTransform.random(
            jax.random.PRNGKey(0), driving.shape[0], tp.sigma_affine, tp.sigma_tps, tp.points_tps
        )
        return source_params, driving_params, out, transform.transform_frame(driving)

    def picture(state: steps.TrainState, batch: dict) -> np.ndarray:
        params, stats = jax.device_get((state.params, state.batch_stats))
        variables = {n: {"params": params[n], "batch_stats": stats[n]} for n in params}
        source, driving = (np.asarray(batch[k][:4]) for k in ("source", "driving"))
        source_params, driving_params, out, transformed = jax.device_get(forward(variables, source, driving))
        return visualize(
            source,
            driving,
            out["prediction"],
            source_params,
            driving_params,
            deformed=out["deformed"],
            occlusion_map=out["occlusion_map"],
            transformed_frame=transformed,
            kp_size=max(1, kp_size // 2),
        )

    return picture
