"""Data-parallel training steps of the reconstruction stage.

The step is written per device with the axis name `data` (the pmap programming
model) and mapped over a one-axis device mesh with `jax.shard_map` under
`jax.jit`: gradients and losses are averaged over the axis, and BatchNorm
statistics either synchronised inside the forward (`sync_bn`, the networks then
carry `bn_axis_name='data'`) or averaged after it, so every device holds the same
state. The random equivariance transforms are drawn for the global batch from
the replicated key and sliced per device, so a step computes the same thing on
any number of devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mraa_jax import process_tuning
from mraa_jax.losses import EquivarianceTransform, VGG19Features
from mraa_jax.model import Networks
from mraa_jax.training.reconstruction import RECONSTRUCTION_NETWORKS, reconstruction_losses

AXIS = "data"


@struct.dataclass
class TrainState:
    """Everything a step changes: replicated on every device."""

    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: Any
    rng: jax.Array


def adam(learning_rate: float, milestones_in_steps=(), decay: float = 0.1) -> optax.GradientTransformation:
    """The original's optimiser: Adam (0.5, 0.999), lr times `decay` at each milestone step."""
    schedule = optax.piecewise_constant_schedule(learning_rate, {int(m): decay for m in milestones_in_steps})
    return optax.adam(schedule, b1=0.5, b2=0.999, eps=1e-8)


def init_train_state(
    variables: dict, optimizer: optax.GradientTransformation, rng: jax.Array, names=RECONSTRUCTION_NETWORKS
) -> TrainState:
    """A state over the networks `names` of a model's variables ({network: {'params', 'batch_stats'}})."""
    params = {n: variables[n]["params"] for n in names}
    batch_stats = {n: variables[n]["batch_stats"] for n in names}
    return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, optimizer.init(params), rng)


def _slice_for_device(transform: EquivarianceTransform, local_batch: int) -> EquivarianceTransform:
    index = jax.lax.axis_index(AXIS)
    take = lambda x: jax.lax.dynamic_slice_in_dim(x, index * local_batch, local_batch)  # noqa: E731
    return EquivarianceTransform(
        take(transform.theta),
        None if transform.control_params is None else take(transform.control_params),
        transform.control_points,
    )


def reconstruction_step(
    state: TrainState,
    vgg_params: dict,
    source: jax.Array,
    driving: jax.Array,
    *,
    networks: Networks,
    optimizer: optax.GradientTransformation,
    train_params: dict,
    sync_bn: bool,
) -> tuple[TrainState, dict]:
    """One optimiser step on this device's part of the batch; call under `shard_map`.

    vgg_params: VGG-19 parameters for the perceptual loss, or {} when its weights are 0.
    """
    vgg = VGG19Features(dtype=networks.compute_dtype)
    vgg_fn = (lambda x: vgg.apply({"params": vgg_params}, x)) if vgg_params else None  # noqa: E731
    local_batch = source.shape[0]
    global_batch = local_batch * jax.lax.psum(1, AXIS)
    rng, key = jax.random.split(state.rng)
    tp = train_params["transform_params"]
    transform = EquivarianceTransform.random(key, global_batch, tp["sigma_affine"], tp["sigma_tps"], tp["points_tps"])
    transform = _slice_for_device(transform, local_batch)

    def loss_fn(params):
        return reconstruction_losses(
            networks,
            params,
            state.batch_stats,
            source,
            driving,
            transform,
            train_params["loss_weights"],
            train_params["scales"],
            vgg_fn,
        )

    # Differentiate w.r.t. a per-device (varying) copy of the replicated params: the
    # gradients are then this device's, averaged explicitly below. (w.r.t. the replicated
    # params themselves, shard_map would already sum them over devices.)
    (total, (named, batch_stats, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        jax.lax.pcast(state.params, AXIS, to="varying")
    )
    grads = jax.lax.pmean(grads, AXIS)
    if not sync_bn:
        # Each device normalised with its own batch; keep one copy of the statistics.
        batch_stats = jax.lax.pmean(batch_stats, AXIS)
    metrics = jax.lax.pmean(dict(named, total=total), AXIS)
    state, metrics["skipped"] = update_if_finite(state, optimizer, grads, batch_stats, metrics["total"], rng)
    return state, metrics


def update_if_finite(
    state: TrainState, optimizer, grads, batch_stats, total: jax.Array, rng: jax.Array
) -> tuple[TrainState, jax.Array]:
    """The next state, and 0.0; or, when the (device-averaged) loss or a gradient is NaN or
    infinite, the same params, statistics and optimiser state (step and rng still advance), and 1.0.

    Skipping keeps one bad batch from poisoning the model; the trainer decides how many to allow.
    """
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(total)
    for leaf in jax.tree_util.tree_leaves(grads):
        finite &= jnp.all(jnp.isfinite(leaf))
    # Through a conditional, so that XLA computes the flag once: as a plain value, it fuses the
    # chain of ands (one per gradient) into every parameter's update, which multiplies the
    # program's size, its compile time and the memory compiling leaves behind.
    finite = jax.lax.cond(finite, lambda: jnp.array(True), lambda: jnp.array(False))
    keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
    new_state = TrainState(
        state.step + 1,
        keep(params, state.params),
        keep(batch_stats, state.batch_stats),
        keep(opt_state, state.opt_state),
        rng,
    )
    return new_state, 1.0 - finite.astype(jnp.float32)


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A one-axis mesh over all (or the given) devices, of every process."""
    devices = jax.devices() if devices is None else devices
    return jax.sharding.Mesh(devices, (AXIS,))


def data_parallel(
    step_fn: Callable, mesh: jax.sharding.Mesh, num_replicated_args: int = 1, num_batch_args: int = 2
) -> Callable:
    """jit(shard_map(step_fn)): the first `num_replicated_args` arguments (the state first)
    replicated, the `num_batch_args` batch arrays after them split on axis 0.

    The state argument is donated: its buffers are reused for the new state. On CPU the
    convolutions are compiled by Eigen, not YNNPACK (`process_tuning.cpu_compiler_options`).
    """
    in_specs = (P(),) * num_replicated_args + (P(AXIS),) * num_batch_args
    mapped = jax.shard_map(step_fn, mesh=mesh, in_specs=in_specs, out_specs=(P(), P()))
    return jax.jit(mapped, donate_argnums=0, compiler_options=process_tuning.cpu_compiler_options(mesh.devices.flat))


def shard_batch(mesh: jax.sharding.Mesh, *arrays):
    """Place this process's part of a batch on its devices, as one global array per input.

    Each process passes its own rows (its share of the global batch, in process order).
    """
    sharding = NamedSharding(mesh, P(AXIS))
    return tuple(jax.make_array_from_process_local_data(sharding, jnp.asarray(a)) for a in arrays)


def replicate(mesh: jax.sharding.Mesh, tree):
    """Fresh copies of a pytree on every device of the mesh (every process passes the same values).

    Always new buffers that JAX owns, so that donating the result never deletes the caller's
    arrays, nor one buffer that two leaves share, and a donating step reuses them from its
    first call. (On CPU, an array made from host memory may keep using that memory: a view of
    the caller's jax array through np.asarray, or a numpy array that happens to be aligned,
    about 1 in 4 small ones; such a buffer is silently not donated. The device-to-device copy
    makes one that can be.)
    """
    sharding = NamedSharding(mesh, P())
    placed = lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x))  # noqa: E731
    return jax.tree_util.tree_map(lambda x: jax.device_put(placed(x), sharding, may_alias=False), tree)


def build_reconstruction_step(networks: Networks, optimizer, train_params: dict, mesh, sync_bn: bool) -> Callable:
    """The jitted data-parallel step: (state, vgg_params, source, driving) -> (state, metrics)."""
    step = functools.partial(
        reconstruction_step, networks=networks, optimizer=optimizer, train_params=train_params, sync_bn=sync_bn
    )
    return data_parallel(step, mesh, num_replicated_args=2)
