"""conv2d: XLA's convolution with its own VJP (thin 7x7 layers by kernel columns, and their
kernel gradient hand-written on CPU; wide float32 3x3 layers by Winograd for inference); how the
library's programs compile convolutions on CPU; upsample_conv2d: nearest x2 upsampling then a
convolution, mostly without the upsampled copy."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import nhwc

from mraa_jax import geometry, process_tuning
from mraa_jax.modules import conv
from mraa_jax.modules.conv import (
    _xla_conv,
    conv2d,
    conv_by_kernel_columns,
    conv_by_taps,
    conv_method,
    portable_convolutions,
)
from mraa_jax.modules.upsample_conv import upsample_conv2d, upsample_conv3x3
from mraa_jax.modules.winograd import conv_by_winograd


def test_layer_choice():
    frame = (1, 64, 64, 64)
    assert conv_method((7, 7, 64, 3), frame) == "thin"  # vox256's output layer
    assert conv_method((7, 7, 35, 10), frame) == "thin"  # vox256's region predictor
    assert conv_method((7, 7, 108, 11), frame) == "thin"  # vox256's flow predictor's mask
    assert conv_method((7, 7, 8, 3), frame) == "xla"  # configs/shapes.py's: 8 channels
    assert conv_method((7, 7, 3, 64), frame) == "xla"  # the first layer: many outputs
    assert conv_method((3, 3, 64, 3), frame) == "xla"  # small kernel
    bottleneck = (3, 3, 256, 256)
    assert conv_method(bottleneck, (1, 64, 64, 256), jnp.bfloat16) == "taps"
    assert conv_method(bottleneck, (1, 8, 8, 256), jnp.bfloat16) == "xla"  # 64 pixels: too few
    assert conv_method(bottleneck, (8, 64, 64, 256), jnp.float32) == "winograd"  # a chunk of 8 frames
    assert conv_method(bottleneck, (4, 64, 64, 256), jnp.float32) == "winograd"
    assert conv_method(bottleneck, (1, 64, 64, 256), jnp.float32) == "winograd"  # one frame
    assert conv_method((3, 3, 128, 128), (8, 64, 64, 128), jnp.float32) == "xla"  # too narrow
    assert conv_method((3, 3, 256, 512), (8, 16, 16, 256), jnp.float32) == "winograd"  # an hourglass's, 8 frames
    assert conv_method((3, 3, 256, 512), (1, 16, 16, 256), jnp.float32) == "xla"  # one frame: too few pixels
    with portable_convolutions():
        assert conv_method(bottleneck, (8, 64, 64, 256), jnp.float32) == "xla"
        assert conv_method(bottleneck, (1, 64, 64, 256), jnp.bfloat16) == "xla"
        assert conv_method((7, 7, 64, 3), frame) == "thin"  # plain XLA ops
    assert conv_method(bottleneck, (8, 64, 64, 256), jnp.float32) == "winograd"


@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 2e-6), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize("x_shape, padding", [((2, 12, 10, 16), 1), ((1, 9, 11, 8), 0)])
def test_taps_compute_the_convolution(x_shape, padding, dtype, tolerance):
    rng = np.random.default_rng(x_shape[1])
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    kernel = jnp.asarray(rng.normal(size=(3, 3, x_shape[-1], 5)) * 0.1, dtype)
    ours, ref = conv_by_taps(x, kernel, padding), _xla_conv(x, kernel, padding)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    # Float32 sums in another order, each rounded once to the dtype.
    scale = float(jnp.abs(ref.astype(jnp.float32)).max())
    np.testing.assert_allclose(ours.astype(jnp.float32), ref.astype(jnp.float32), rtol=0, atol=tolerance * scale)


def test_bfloat16_layer_by_taps_and_its_gradients():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(1, 64, 64, 16)), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 16, 8)) * 0.1, jnp.bfloat16)
    assert conv_method(kernel.shape, x.shape, x.dtype) == "taps"
    out, vjp = jax.vjp(lambda x, k: conv2d(x, k, 1), x, kernel)
    _, ref_vjp = jax.vjp(lambda x, k: _xla_conv(x, k, 1), x, kernel)
    np.testing.assert_array_equal(out, conv_by_taps(x, kernel, 1))
    compiled = jax.jit(lambda x, k: conv2d(x, k, 1)).lower(x, kernel).compile().as_text()
    assert "convolution(" not in compiled and "dot(" in compiled  # on CPU: matrix products only
    grad = jnp.asarray(rng.normal(size=out.shape), jnp.bfloat16)
    for ours, xla in zip(vjp(grad), ref_vjp(grad)):  # XLA's rule
        np.testing.assert_array_equal(ours, xla)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, padding",
    [((2, 20, 24, 64), (7, 7, 64, 3), 3), ((1, 9, 13, 40), (7, 7, 40, 11), 0), ((2, 16, 16, 32), (5, 3, 32, 2), 1)],
)
def test_kernel_columns_compute_the_convolution(x_shape, kernel_shape, padding):
    rng = np.random.default_rng(sum(x_shape))
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=kernel_shape) * 0.05, jnp.float32)
    ours, ref = conv_by_kernel_columns(x, kernel, padding), _xla_conv(x, kernel, padding)
    assert ours.shape == ref.shape
    # Sums of kh*kw*C products in another order: float32 rounding only.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * float(jnp.abs(ref).max()))


@pytest.mark.parametrize(
    "x_shape, padding", [((2, 16, 16, 8), 1), ((1, 13, 10, 5), 1), ((2, 9, 11, 6), 0), ((1, 7, 6, 3), 2)]
)
def test_winograd_computes_the_convolution(x_shape, padding):
    """Whole tiles and cut ones (sizes that are not multiples of 4), every padding."""
    rng = np.random.default_rng(sum(x_shape))
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, x_shape[-1], 7)) * 0.1, jnp.float32)
    ours, ref = conv_by_winograd(x, kernel, padding), _xla_conv(x, kernel, padding)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    # The transforms' coefficients (up to 8 and 1/24) round more than the direct sum: measured 1-3e-6 of the scale.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * float(jnp.abs(ref).max()))


def test_winograd_layer_for_inference_xlas_when_differentiated(monkeypatch):
    """Not differentiated, a wide layer on CPU is computed by Winograd with no convolution left;
    differentiated, its forward pass and gradients are XLA's (training is unchanged)."""
    monkeypatch.setattr(conv, "MIN_WINOGRAD_CHANNELS", 8)  # the rule at a test's size
    monkeypatch.setattr(conv, "MIN_WINOGRAD_PIXELS", 256)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(1, 16, 16, 8)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 8, 8)) * 0.1, jnp.float32)
    assert conv_method(kernel.shape, x.shape) == "winograd"
    inference = jax.jit(lambda x, k: conv2d(x, k, 1))
    np.testing.assert_array_equal(inference(x, kernel), jax.jit(conv_by_winograd, static_argnums=2)(x, kernel, 1))
    assert "convolution(" not in inference.lower(x, kernel).compile().as_text()
    for ours, xla in zip(_gradients(conv2d, x, kernel, 1), _gradients(_xla_conv, x, kernel, 1)):
        np.testing.assert_array_equal(ours, xla)


def test_fixture_outputs_with_every_3x3_layer_by_winograd(monkeypatch, converted_dir, fixture_inputs, fixture_outputs):
    """The original's outputs (tests/test_parity.py's bound) still hold with Winograd's rounding in
    every 3x3 layer of the fixture model (whose layers are too narrow for it by the rule)."""
    import mraa_jax

    monkeypatch.setattr(conv, "MIN_WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(conv, "MIN_WINOGRAD_PIXELS", 1)
    traced = []
    monkeypatch.setattr(conv, "conv_by_winograd", lambda *args: traced.append(args[1].shape) or conv_by_winograd(*args))
    model = mraa_jax.load(converted_dir)  # its programs traced afresh, under the patched rule
    source, driving = nhwc(fixture_inputs["source"]), nhwc(fixture_inputs["driving"])
    out = model.generate(source, model.regions(source), model.regions(driving), model.background(source, driving))
    for key in ("prediction", "deformed", "occlusion_map"):
        difference = float(np.max(np.abs(np.asarray(out[key]) - nhwc(fixture_outputs[f"gen.{key}"]))))
        assert difference <= 1e-4, f"gen.{key}: max abs difference {difference:.3g}"
    assert len(traced) >= 10  # the generator's and the flow predictor's 3x3 layers


def _gradients(conv_fn, x, kernel, padding):
    out, vjp = jax.vjp(lambda x, k: conv_fn(x, k, padding), x, kernel)
    grad = jnp.asarray(np.random.default_rng(1).normal(size=out.shape), jnp.float32)
    return out, *vjp(grad)


@pytest.mark.parametrize("padding", [1, 0])
def test_xla_method_is_xlas_own_gradient(padding):
    rng = np.random.default_rng(padding)
    x = jnp.asarray(rng.normal(size=(2, 16, 16, 8)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 8, 16)), jnp.float32)
    assert conv_method(kernel.shape, x.shape) == "xla"
    for ours, xla in zip(_gradients(conv2d, x, kernel, padding), _gradients(_xla_conv, x, kernel, padding)):
        np.testing.assert_array_equal(ours, xla)


@pytest.mark.parametrize("padding", [3, 1])
def test_thin_layer_and_its_gradients_match_xla(padding):
    rng = np.random.default_rng(padding)
    x = jnp.asarray(rng.normal(size=(2, 40, 40, 64)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(7, 7, 64, 3)) * 0.05, jnp.float32)
    assert conv_method(kernel.shape, x.shape) == "thin"
    (out, x_grad, kernel_grad), (ref_out, ref_x_grad, ref_kernel_grad) = (
        _gradients(conv2d, x, kernel, padding),
        _gradients(_xla_conv, x, kernel, padding),
    )
    np.testing.assert_array_equal(out, conv_by_kernel_columns(x, kernel, padding))
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-6 * float(jnp.abs(ref_out).max()))
    np.testing.assert_array_equal(x_grad, ref_x_grad)  # XLA's rule
    # Sums of 3200 products each (2 x 40 x 40 pixels), in another order: float32 rounding only; but not XLA's rule.
    scale = float(jnp.abs(ref_kernel_grad).max())
    np.testing.assert_allclose(kernel_grad, ref_kernel_grad, rtol=0, atol=2e-5 * scale)
    assert float(jnp.abs(kernel_grad - ref_kernel_grad).max()) > 0


def test_output_patch_gradient_in_bfloat16():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 64, 64, 64)), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=(7, 7, 64, 3)) * 0.05, jnp.float32)

    def loss(conv_fn, k):
        return jnp.sum(conv_fn(x, k.astype(jnp.bfloat16), 3).astype(jnp.float32) ** 2)

    ours = jax.grad(lambda k: loss(conv2d, k))(kernel)
    ref = jax.grad(lambda k: loss(_xla_conv, k))(kernel)
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-2 * float(jnp.abs(ref).max()))


@pytest.mark.parametrize("kernel_shape", [(7, 7, 64, 3), (3, 3, 64, 32)])
def test_gradient_of_a_replicated_kernel_under_shard_map(kernel_shape):
    """A kernel the same on every device (not cast to varying, like VGG-19's in the perceptual
    loss) gets its gradient summed over the devices, as XLA's own rule gives it."""
    from jax.sharding import PartitionSpec as P

    from mraa_jax.training.steps import AXIS, make_mesh

    mesh = make_mesh(jax.devices()[:1])
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 32, 32, 64)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=kernel_shape) * 0.05, jnp.float32)
    padding = kernel_shape[0] // 2

    def kernel_grad(conv_fn):
        def per_device(x, kernel):
            grad = jax.grad(lambda k: jnp.sum(conv_fn(x, k, padding) ** 2))(kernel)
            return jax.lax.pmean(grad, AXIS)

        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(AXIS), P()), out_specs=P()))(x, kernel)

    ours, ref = kernel_grad(conv2d), kernel_grad(_xla_conv)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-5 * float(jnp.abs(ref).max()))


def _ynn_convolutions(compiled) -> int:
    """How many YNNPACK fusions of an optimised CPU program hold a convolution."""
    text = compiled.as_text()
    called = re.findall(r"calls=%?([\w.-]+).*\"__ynn_fusion\"", text)
    bodies = (re.search(r"^%?" + re.escape(name) + r" .*?\n}", text, re.M | re.S).group(0) for name in called)
    return sum("convolution(" in body for body in bodies)


def test_training_steps_compile_convolutions_without_ynnpack():
    """The training steps' compiler options reach XLA: a convolution is not a YNNPACK fusion
    there (which, by default, it is; one that YNNPACK fuses into a reduction still is)."""
    from mraa_jax.training.steps import AXIS, data_parallel, make_mesh

    mesh = make_mesh(jax.devices()[:1])
    x, kernel = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32))

    def step(kernel, x):
        return kernel, jax.lax.pmean(_xla_conv(x, kernel, 1), AXIS)

    default = jax.jit(lambda kernel, x: _xla_conv(x, kernel, 1)).lower(kernel, x).compile()
    training = data_parallel(step, mesh, num_replicated_args=1, num_batch_args=1).lower(kernel, x).compile()
    assert _ynn_convolutions(default) > 0
    assert _ynn_convolutions(training) == 0
    assert process_tuning.cpu_compiler_options(jax.devices()) == process_tuning.CPU_COMPILER_OPTIONS


def test_model_programs_compile_convolutions_without_ynnpack():
    """MRAA's own programs (here the source encoder, as animate and streams run it) compile with
    the same options, without any process-wide flag."""
    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA
    from mraa_jax.modules.generator import Generator

    config = load_config("configs/shapes.py")
    config.model_params.generator_params.block_expansion = 32  # a first layer to 32 channels: YNNPACK's by default
    model = MRAA.random(config)
    variables = model.variables["generator"]
    source = jnp.zeros((1, *config.dataset_params.frame_shape), jnp.float32)
    encode = lambda v, s: model.networks.generator.apply(v, s, method=Generator.encode)  # noqa: E731
    by_default = _ynn_convolutions(jax.jit(encode).lower(variables, source).compile())
    ours = _ynn_convolutions(model.jitted.encode.lower(variables, source).compile())
    assert ours < by_default  # the first layer's is gone; those fused into the pooling's reduction stay
    assert model.compiler_options == process_tuning.CPU_COMPILER_OPTIONS


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
        copy = conv2d(geometry.upsample_nearest_2x(x), kernel, padding)
        return bool(jnp.all(upsample_conv2d(x, kernel, padding) == copy))

    assert not rounds_like_the_copy((2, 16, 16, 32), 3, 8, 1)  # 512 pixels >= 4 * 8 channels
    assert rounds_like_the_copy((2, 2, 2, 32), 3, 8, 1)  # 8 pixels < 32
    assert rounds_like_the_copy((2, 16, 16, 32), 3, 8, 0)  # padding 0
    assert rounds_like_the_copy((2, 16, 16, 32), 5, 8, 2)  # 5x5
