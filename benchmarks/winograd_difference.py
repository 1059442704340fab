"""How far Winograd F(4x4, 3x3) (modules/winograd.py) moves vox256's animation on CPU.

    python benchmarks/winograd_difference.py [--frames 16 --chunk 8]

vox256 at 256x256 with random weights (no trained vox256 checkpoint is available here), the
real source image and driving video of tests/fixtures/data, mode "standard". The same model animates
the clip twice: as the library runs it (the bottleneck's 3x3 layers and, in chunks, the hourglasses'
16x16 ones by Winograd) and with every 3x3 layer direct (the programs traced again under a rule that
never picks Winograd). Prints the max and mean absolute difference (images in [0, 1]) and how
many layers each run traced by Winograd, as JSON. With random weights the output hardly depends
on the layers, so it also prints one bottleneck layer's error (64x64x256 -> 256, 2 frames, input
after a ReLU) against float64, for Winograd and for XLA's direct convolution, relative to the
output's RMS. tests/test_conv.py holds the fixture model's
outputs within the parity bound with Winograd forced on every 3x3 layer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np
from _measure import cpu_description

from mraa_jax.config import load_config
from mraa_jax.evaluation.runs import demo_inputs
from mraa_jax.model import MRAA
from mraa_jax.modules import conv
from mraa_jax.modules.winograd import conv_by_winograd

DATA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data"


def layer_errors(shape=(2, 64, 64, 256), features=256) -> dict:
    """Max and mean absolute error of one 3x3 layer (padding 1) in float32 against float64, over the output's RMS."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=shape), 0)
    kernel = rng.normal(size=(3, 3, shape[-1], features)) * 0.05
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    n, h, w, _ = shape
    truth = sum(padded[:, i : i + h, j : j + w] @ kernel[i, j] for i in range(3) for j in range(3))
    rms = float(np.sqrt(np.mean(truth**2)))
    x32, k32 = np.float32(x), np.float32(kernel)
    errors = {}
    for name, fn in (("winograd", conv_by_winograd), ("direct", conv._xla_conv)):
        error = np.abs(np.asarray(jax.jit(fn, static_argnums=2)(x32, k32, 1), np.float64) - truth)
        errors[name] = {"max_over_rms": float(error.max()) / rms, "mean_over_rms": float(error.mean()) / rms}
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=8)
    args = parser.parse_args()
    config = load_config(args.config)
    config.dataset_params.frame_shape = [256, 256, 3]
    model = MRAA.random(config)
    source, driving, _ = demo_inputs(model, DATA / "source.png", DATA / "driving.mp4", max_frames=None)
    driving = driving[: args.frames]

    traced = []
    by_winograd = conv.conv_by_winograd
    conv.conv_by_winograd = lambda *a: traced.append(a[1].shape) or by_winograd(*a)  # counts the layers traced
    videos, layers_by_winograd = {}, {}
    for name, min_channels in (("winograd", conv.MIN_WINOGRAD_CHANNELS), ("direct", float("inf"))):
        conv.MIN_WINOGRAD_CHANNELS = min_channels
        jax.clear_caches()  # trace the model's programs again under this rule
        traced.clear()
        videos[name] = np.asarray(model.animate(source, driving, mode="standard", chunk_size=args.chunk))
        layers_by_winograd[name] = len(traced)
    difference = np.abs(videos["winograd"] - videos["direct"])
    report = {
        "frames": int(driving.shape[0]),
        "chunk": args.chunk,
        "layers_by_winograd": layers_by_winograd,
        "max_abs_difference": float(difference.max()),
        "mean_abs_difference": float(difference.mean()),
        "bottleneck_layer_error_against_float64": layer_errors(),
        **cpu_description(),
        "jax": jax.__version__,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
