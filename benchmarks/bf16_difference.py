"""How far bfloat16 compute moves the animation from float32, on the original's fixture model.

    python benchmarks/bf16_difference.py --fixture tests/fixtures/mraa_tiny --out diff.json

Converts the fixture checkpoint (needs the `convert` extra, torch), animates the fixture's
real clip in relative mode three ways: float32 at the backend's default precision (on
NVIDIA GPUs XLA may then run float32 convolutions in TF32), float32 at
`jax.default_matmul_precision("highest")`, and `compute_dtype="bfloat16"`. Prints the max
and mean absolute differences between them (images in [0, 1]) as JSON. tests/test_bf16.py
bounds the bfloat16 one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import jax
import numpy as np

import mraa_jax
from mraa_jax.convert import main as convert

VARIANTS = {
    "float32_default": ("float32", None),
    "float32_highest": ("float32", "highest"),
    "bfloat16": ("bfloat16", None),
}


def animations(model_dir: str, source: np.ndarray, clip: np.ndarray) -> dict:
    """The clip animated by each variant (a freshly loaded model each, so nothing compiled is shared)."""
    videos = {}
    for name, (dtype, precision) in VARIANTS.items():
        model = mraa_jax.load(model_dir).with_compute_dtype(dtype)
        with jax.default_matmul_precision(precision):
            videos[name] = np.asarray(model.animate(source, clip, mode="relative", chunk_size=4))
    return videos


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fixture", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mraa_tiny")
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    fixture = Path(args.fixture)
    if not (fixture / "checkpoint.pth").is_file():
        parser.error(f"--fixture {fixture}: expected a folder with config.yaml, checkpoint.pth and inputs.npz")

    model_dir = str(Path(tempfile.mkdtemp(prefix="mraa-bf16-")) / "model")
    if (
        convert(
            [
                "--config",
                str(fixture / "config.yaml"),
                "--checkpoint",
                str(fixture / "checkpoint.pth"),
                "--output",
                model_dir,
            ]
        )
        != 0
    ):
        raise SystemExit("conversion of the fixture checkpoint failed")
    inputs = np.load(fixture / "inputs.npz")
    source, clip = (
        np.moveaxis(inputs["source"][0], 0, -1),
        np.moveaxis(inputs["clip"], -3, -1),
    )  # the original's NCHW as NHWC
    videos = animations(model_dir, source, clip)

    def difference(a: str, b: str) -> dict:
        gap = np.abs(videos[a] - videos[b])
        return {"max": float(gap.max()), "mean": float(gap.mean())}

    report = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "frames": int(clip.shape[0]),
        "bfloat16_vs_float32_default": difference("bfloat16", "float32_default"),
        "bfloat16_vs_float32_highest": difference("bfloat16", "float32_highest"),
        "float32_default_vs_highest": difference("float32_default", "float32_highest"),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
