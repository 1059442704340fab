"""`model.animate` as a user calls it from plain Python (no process setup), in one variant.

    python benchmarks/animate_variants.py --variant float32 [--frames 16 --chunk 16]
    python benchmarks/animate_variants.py --variant bfloat16     # compute_dtype="bfloat16"
    python benchmarks/animate_variants.py --variant ynnpack      # the animation chunk compiled with XLA's defaults (YNNPACK)
    python benchmarks/animate_variants.py --variant direct       # float32 without Winograd (every 3x3 layer direct)

Unlike the other benchmarks this one does NOT call mraa_jax.process_tuning.tune_process: no
scheduler flag, no huge pages, as in a user's script. vox256 at 256x256, random weights,
mode "standard". One warm-up call (compilation), then three timed calls on the whole clip.
Prints one JSON line: seconds per frame of each call, and their median. Run each variant in its
own process, alternately, to compare.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import jax
import numpy as np
from _measure import cpu_description

from mraa_jax.config import load_config
from mraa_jax.model import MRAA, animation_chunk
from mraa_jax.modules import conv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("float32", "bfloat16", "ynnpack", "direct"), default="float32")
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=16)
    args = parser.parse_args()
    config = load_config(args.config)
    config.dataset_params.frame_shape = [256, 256, 3]
    if args.variant == "bfloat16":
        config.model_params.compute_dtype = "bfloat16"
    if args.variant == "direct":
        conv.MIN_WINOGRAD_CHANNELS = float("inf")  # read when the programs are traced
    model = MRAA.random(config)
    if args.variant == "ynnpack":
        model.jitted.animation_chunk = jax.jit(
            functools.partial(animation_chunk, model.networks), static_argnames=("mode", "visual")
        )
    rng = np.random.default_rng(0)
    source = rng.random((256, 256, 3), np.float32)
    clip = rng.random((args.frames, 256, 256, 3), np.float32)
    run = lambda: np.asarray(model.animate(source, clip, mode="standard", chunk_size=args.chunk))  # noqa: E731
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / args.frames)
    print(
        json.dumps(
            {
                "variant": args.variant,
                "frames": args.frames,
                "chunk": args.chunk,
                "first_call_s": round(first, 2),
                "s_per_frame": [round(t, 3) for t in times],
                "median_s_per_frame": round(statistics.median(times), 3),
                **cpu_description(),
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
