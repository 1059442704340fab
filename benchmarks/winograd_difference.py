"""How far Winograd F(4x4, 3x3) (modules/winograd.py) moves vox256's animation on CPU.

    python benchmarks/winograd_difference.py [--frames 16 --chunk 8]

vox256 at 256x256 with random weights (no trained vox256 checkpoint is available here), the
real source image and driving video of ../shared/data, mode "standard". The same model animates
the clip twice: as the library runs it (the bottleneck's 3x3 layers by Winograd in chunks of at
least 4 frames) and with every 3x3 layer direct (the programs traced again under a rule that
never picks Winograd). Prints the max and mean absolute difference (images in [0, 1]) and how
many layers each run traced by Winograd, as JSON. tests/test_conv.py holds the fixture model's
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

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
    videos = {}
    for name, min_channels in (("winograd", conv.MIN_WINOGRAD_CHANNELS), ("direct", float("inf"))):
        conv.MIN_WINOGRAD_CHANNELS = min_channels
        jax.clear_caches()  # trace the model's programs again under this rule
        traced.clear()
        videos[name] = np.asarray(model.animate(source, driving, mode="standard", chunk_size=args.chunk))
        videos[name + "_layers"] = len(traced)
    difference = np.abs(videos["winograd"] - videos["direct"])
    report = {
        "frames": int(driving.shape[0]),
        "chunk": args.chunk,
        "layers_by_winograd": {"winograd": videos["winograd_layers"], "direct": videos["direct_layers"]},
        "max_abs_difference": float(difference.max()),
        "mean_abs_difference": float(difference.mean()),
        **cpu_description(),
        "jax": jax.__version__,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
