"""Cotangents that custom VJPs return for parameters, inside and outside `shard_map`."""

from __future__ import annotations

import jax


def cotangent_for(primal: jax.Array, grad: jax.Array) -> jax.Array:
    """`grad` (computed from this device's data) as the cotangent of `primal`.

    Under shard_map, a primal that is the same on every device (VGG-19's kernels in the
    perceptual loss) must get the sum of the devices' gradients, as autodiff gives it: the
    transpose of "primal used where the data varies" does that sum. It is the identity when
    the primal varies like the data, and outside shard_map.
    """
    _, as_cotangent = jax.vjp(lambda p: p + 0 * jax.lax.stop_gradient(grad), primal)
    return as_cotangent(grad)[0]
