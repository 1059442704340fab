"""conv2d: XLA's convolution, with a hand-written kernel gradient on CPU for large layers;
upsample_conv2d: nearest x2 upsampling then a convolution, mostly without the upsampled copy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mraa_jax import geometry
from mraa_jax.modules.conv import _xla_conv, conv2d, kernel_gradient_method
from mraa_jax.modules.upsample_conv import upsample_conv2d, upsample_conv3x3


def test_layer_choice():
    def method(x_shape, kernel_shape, padding):
        return kernel_gradient_method(x_shape, kernel_shape, padding)

    assert method((2, 256, 256, 64), (3, 3, 64, 128), 1) == "taps"  # vox256 generator, batch 2
    assert method((8, 64, 64, 128), (3, 3, 128, 128), 1) == "taps"
    assert method((2, 128, 128, 32), (3, 3, 32, 64), 1) == "xla"  # few channels
    assert method((2, 64, 64, 256), (3, 3, 256, 256), 1) == "taps"  # vox256's bottleneck
    assert method((2, 32, 32, 256), (3, 3, 256, 512), 1) == "xla"  # few rows
    assert method((2, 64, 64, 256), (3, 3, 256, 256), 0) == "xla"  # 62x62 output: 7688 rows
    assert method((2, 34, 34, 256), (2, 2, 256, 256), 0) == "taps"  # up-convolution phase kernels
    assert method((8, 18, 18, 32), (2, 2, 32, 64), 0) == "xla"  # configs/shapes.py's largest
    assert method((2, 256, 256, 64), (7, 7, 64, 3), 3) == "output_patches"  # vox256's output layer
    assert method((8, 64, 64, 8), (7, 7, 8, 3), 3) == "xla"  # configs/shapes.py's: 8 channels
    assert method((2, 64, 64, 35), (7, 7, 35, 10), 3) == "output_patches"  # vox256's region predictor
    assert method((2, 256, 256, 3), (7, 7, 3, 64), 3) == "xla"  # the first layer: many outputs


def _compare_with_xla(x, kernel, padding, tolerance):
    """conv2d's output and gradients against XLA's own; returns the kernel gradients' largest difference."""
    out, ours = jax.vjp(lambda x, k: conv2d(x, k, padding), x, kernel)
    ref_out, xla = jax.vjp(lambda x, k: _xla_conv(x, k, padding), x, kernel)
    np.testing.assert_array_equal(out, ref_out)  # the forward pass is XLA's
    grad = jnp.asarray(np.random.default_rng(1).normal(size=out.shape), jnp.float32)
    (x_grad, kernel_grad), (ref_x_grad, ref_kernel_grad) = ours(grad), xla(grad)
    np.testing.assert_array_equal(x_grad, ref_x_grad)
    np.testing.assert_allclose(kernel_grad, ref_kernel_grad, rtol=0, atol=tolerance * float(jnp.abs(ref_kernel_grad).max()))
    return float(jnp.abs(kernel_grad - ref_kernel_grad).max())


@pytest.mark.parametrize("padding", [1, 0, 2])
def test_tap_gradient_matches_xla(padding):
    size = {1: 64, 0: 66, 2: 62}[padding]  # 64x64 outputs: 8192 rows at batch 2, the least for taps
    rng = np.random.default_rng(padding)
    x = jnp.asarray(rng.normal(size=(2, size, size, 64)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 64, 128)) * 0.05, jnp.float32)
    assert kernel_gradient_method(x.shape, kernel.shape, padding) == "taps"
    # Sums of 8192 products each, in another order: float32 rounding only; but not XLA's rule.
    assert _compare_with_xla(x, kernel, padding, 2e-5) > 0


@pytest.mark.parametrize("padding", [3, 1])
def test_output_patch_gradient_matches_xla(padding):
    rng = np.random.default_rng(padding)
    x = jnp.asarray(rng.normal(size=(2, 40, 40, 64)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(7, 7, 64, 3)) * 0.05, jnp.float32)
    assert kernel_gradient_method(x.shape, kernel.shape, padding) == "output_patches"
    assert _compare_with_xla(x, kernel, padding, 2e-5) > 0


def test_tap_gradient_in_bfloat16():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 128, 128, 64)), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 64, 128)) * 0.05, jnp.float32)

    def loss(conv, k):
        return jnp.sum(conv(x, k.astype(jnp.bfloat16), 1).astype(jnp.float32) ** 2)

    ours = jax.grad(lambda k: loss(conv2d, k))(kernel)
    ref = jax.grad(lambda k: loss(_xla_conv, k))(kernel)
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-2 * float(jnp.abs(ref).max()))


def test_tap_gradient_of_a_replicated_kernel_under_shard_map():
    """A kernel the same on every device (not cast to varying, like VGG-19's in the perceptual
    loss) gets its gradient summed over the devices, as XLA's own rule gives it."""
    from jax.sharding import PartitionSpec as P

    from mraa_jax.training.steps import AXIS, make_mesh

    mesh = make_mesh(jax.devices()[:1])
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 128, 128, 64)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 64, 128)) * 0.05, jnp.float32)

    def kernel_grad(conv):
        def per_device(x, kernel):
            grad = jax.grad(lambda k: jnp.sum(conv(x, k, 1) ** 2))(kernel)
            return jax.lax.pmean(grad, AXIS)

        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(AXIS), P()), out_specs=P()))(x, kernel)

    ours, ref = kernel_grad(conv2d), kernel_grad(_xla_conv)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-5 * float(jnp.abs(ref).max()))


def _upsample_then_conv(x, kernel, padding):
    return _xla_conv(geometry.upsample_nearest_2x(x), kernel, padding)


@pytest.mark.parametrize("shape", [(2, 5, 7, 4), (1, 1, 1, 3), (3, 6, 2, 5)])
def test_upsample_conv3x3_matches_upsampling_then_convolving(shape):
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], 6)), jnp.float32)
    out, ours = jax.vjp(upsample_conv3x3, x, kernel)
    ref_out, ref = jax.vjp(lambda x, k: _upsample_then_conv(x, k, 1), x, kernel)
    assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-5 * float(jnp.abs(ref_out).max()))
    grad = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
    for got, want in zip(ours(grad), ref(grad)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(jnp.abs(want).max()))


def test_upsample_conv2d_takes_the_phase_form_only_where_it_pays():
    """Large inputs go through upsample_conv3x3 (its rounding differs from the upsampled
    copy's), tiny inputs with many channels and other kernels through the upsampled copy."""
    rng = np.random.default_rng(7)

    def rounds_like_the_copy(x_shape, kernel_size, features, padding):
        x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, x_shape[-1], features)), jnp.float32)
        return bool(jnp.all(upsample_conv2d(x, kernel, padding) == _upsample_then_conv(x, kernel, padding)))

    assert not rounds_like_the_copy((2, 16, 16, 32), 3, 8, 1)  # 512 pixels >= 4 * 8 channels
    assert rounds_like_the_copy((2, 2, 2, 32), 3, 8, 1)  # 8 pixels < 32
    assert rounds_like_the_copy((2, 16, 16, 32), 3, 8, 0)  # padding 0
    assert rounds_like_the_copy((2, 16, 16, 32), 5, 8, 2)  # 5x5
