"""Train-mode batch normalisation (optionally followed by ReLU) whose backward pass keeps
only its input.

Autodiff of `(x - mean) * rsqrt(var + eps) * scale + bias` keeps both the input and
`x - mean` (and, after a ReLU, its mask) from the forward pass until the backward pass;
on CPU XLA holds them all, a large share of a training step's peak memory.
`normalize_with_batch_statistics` has its own VJP, which keeps x and recomputes the
rest: the same function, its gradient the same sums in another order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mraa_jax.modules.cotangents import cotangent_for


def _channel_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Sum over every axis but the last (channels), and over the device axis if named."""
    total = x.sum(tuple(range(x.ndim - 1)))
    return total if axis_name is None else jax.lax.psum(total, axis_name)


def sample_count(x: jax.Array, axis_name: str | None = None):
    """How many values per channel the batch statistics average (over the devices on `axis_name`)."""
    count = x.size // x.shape[-1]
    return count if axis_name is None else count * jax.lax.psum(1, axis_name)


def batch_statistics(x: jax.Array, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance of x in float32, over the batch (and the devices
    on `axis_name`)."""
    x32 = x.astype(jnp.float32)
    count = sample_count(x, axis_name)
    mean = _channel_sum(x32, axis_name) / count
    return mean, _channel_sum(jnp.square(x32 - mean), axis_name) / count


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def normalize_with_batch_statistics(x, scale, bias, epsilon: float, axis_name: str | None, relu: bool):
    """(x normalised per channel (last axis) with `batch_statistics`, times scale plus bias,
    then ReLU if `relu`; the statistics). Arithmetic in float32, the result in x's dtype.

    The statistics are for the running averages and are not differentiated (as if through
    `jax.lax.stop_gradient`)."""
    return _forward(x, scale, bias, epsilon, axis_name, relu)[0]


def _forward(x, scale, bias, epsilon, axis_name, relu):
    mean, var = batch_statistics(x, axis_name)
    inv_std = jax.lax.rsqrt(var + epsilon)
    out = (x.astype(jnp.float32) - mean) * (inv_std * scale) + bias
    out = jax.nn.relu(out) if relu else out
    return (out.astype(x.dtype), mean, var), (x, scale, bias, mean, inv_std)


def _backward(epsilon, axis_name, relu, residuals, cotangents):
    x, scale, bias, mean, inv_std = residuals
    out_grad = cotangents[0]  # (the statistics' cotangents are ignored)
    x32 = x.astype(jnp.float32)
    # Recomputed as x*s - m*s, not (x - m)*s: XLA would merge the latter with the forward's
    # x - mean and so keep that from the forward pass to this one.
    normalized = x32 * inv_std - mean * inv_std
    grad = out_grad.astype(jnp.float32)
    if relu:  # where the forward's pre-activation was positive (recomputed: the same up to rounding)
        grad = jnp.where(normalized * scale + bias > 0, grad, 0.0)
    local_grad_sum = _channel_sum(grad, None)
    local_grad_dot = _channel_sum(grad * normalized, None)
    grad_sum, grad_dot = local_grad_sum, local_grad_dot
    if axis_name is not None:  # the statistics are the devices' together
        grad_sum, grad_dot = jax.lax.psum((grad_sum, grad_dot), axis_name)
    count = sample_count(x, axis_name)
    x_grad = (inv_std * scale) * grad - (inv_std * scale / count) * (grad_sum + normalized * grad_dot)
    return x_grad.astype(x.dtype), cotangent_for(scale, local_grad_dot), cotangent_for(bias, local_grad_sum)


normalize_with_batch_statistics.defvjp(_forward, _backward)
