"""One convolution layer's forward pass and gradients, compiled as animation and as training are.

    python benchmarks/conv_gradient.py --batch 2 --size 64 --channels 256 --features 256 --kernel 3

Random input (batch, size, size, channels) and output gradient; a stride-1 convolution to
`features` channels with a kernel x kernel kernel, 'SAME'-padded for odd kernels (even ones
shrink the output by one). Times, each jitted, warmed up once and then the median of --repeats
calls: the forward pass, XLA's input gradient and XLA's kernel gradient, each compiled with
XLA's default options (on CPU: YNNPACK's convolutions, as animation runs them; `*_ynnpack`) and
with the training steps' (`mraa_jax.process_tuning.CPU_COMPILER_OPTIONS`: Eigen's; `*_training`); and the
kernel gradient by output patches, which `conv2d` uses on CPU for thin 7x7 layers (which one
this layer gets, `conv_method`, is printed too). Prints JSON.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np
from _measure import median_seconds

from mraa_jax.modules.conv import _xla_conv, conv_method, kernel_grad_by_output_patches
from mraa_jax.process_tuning import CPU_COMPILER_OPTIONS, tune_process


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    padding = (args.kernel - 1) // 2  # 'same' size for odd kernels; even ones shrink by one
    out_size = args.size + 2 * padding - args.kernel + 1
    x = rng.random((args.batch, args.size, args.size, args.channels), np.float32)
    kernel = rng.random((args.kernel, args.kernel, args.channels, args.features), np.float32)
    out_grad = rng.random((args.batch, out_size, out_size, args.features), np.float32)

    def xla_input_grad(x, g):
        return jax.vjp(lambda x: _xla_conv(x, kernel, padding), x)[1](g)[0]

    def xla_kernel_grad(x, g):
        return jax.vjp(lambda k: _xla_conv(x, k, padding), kernel)[1](g)[0]

    layer = {
        "forward": (lambda x, k: _xla_conv(x, k, padding), (x, kernel)),
        "xla_input_grad": (xla_input_grad, (x, out_grad)),
        "xla_kernel_grad": (xla_kernel_grad, (x, out_grad)),
    }
    variants = {}
    for name, (fn, fn_args) in layer.items():
        variants[f"{name}_ynnpack"] = (jax.jit(fn), fn_args)
        variants[f"{name}_training"] = (jax.jit(fn, compiler_options=CPU_COMPILER_OPTIONS), fn_args)
    variants["output_patch_kernel_grad"] = (
        jax.jit(lambda x, g: kernel_grad_by_output_patches(x, g, kernel.shape, padding)),
        (x, out_grad),
    )
    flop = 2 * args.batch * out_size**2 * args.channels * args.features * args.kernel**2
    report = {
        "layer": vars(args),
        "gflop": round(flop / 1e9, 2),
        "conv2d_method": conv_method(kernel.shape, x.shape),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
    }
    for name, (fn, fn_args) in variants.items():
        seconds = median_seconds(fn, fn_args, args.repeats)
        report[name] = {"median_s": round(seconds, 4), "gflop_per_s": round(flop / seconds / 1e9, 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
