"""Write a PNG grid of synthetic clips: one row per clip, frames spread over the clip.

    python scripts/show_synthetic.py --out synthetic.png
    python scripts/show_synthetic.py --out synthetic.png --clips 8 --columns 8 --size 64 --seed 0 --zoom 2

Clips are those of the built-in dataset (`mraa_jax.data.figures.make_clip`) with the same
seed/split/size/frames, rendered directly (nothing is built). With --overlay, the joints
(pivots) are marked in red so the articulation can be checked by eye.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mraa_jax.data.figures import make_clip  # noqa: E402


def grid(args) -> np.ndarray:
    rows = []
    for i in range(args.clips):
        clip = make_clip(args.seed, args.split, args.first + i, args.frames, args.size)
        picks = np.linspace(0, args.frames - 1, args.columns).round().astype(int)
        frames = clip.frames[picks].copy()
        if args.overlay:
            for k, t in enumerate(picks):
                for x, y in clip.joints[t]:
                    xi, yi = (
                        int(np.clip(round(x - 0.5), 0, args.size - 1)),
                        int(np.clip(round(y - 0.5), 0, args.size - 1)),
                    )
                    frames[k, yi, xi] = (255, 0, 0)
        pad = np.full((args.columns, args.size, 2, 3), 255, np.uint8)
        rows.append(np.concatenate([np.concatenate([f, p], 1) for f, p in zip(frames, pad)], 1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    image = np.concatenate(rows, 0)
    return image.repeat(args.zoom, 0).repeat(args.zoom, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="synthetic.png", help="PNG to write")
    parser.add_argument("--clips", type=int, default=6, help="rows: clips shown")
    parser.add_argument("--columns", type=int, default=8, help="frames shown per clip, evenly spread")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (the dataset's num_frames)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--first", type=int, default=0, help="index of the first clip")
    parser.add_argument("--zoom", type=int, default=2, help="integer upscaling of the picture")
    parser.add_argument("--overlay", action="store_true", help="mark the joints in red")
    args = parser.parse_args(argv)
    from PIL import Image

    Image.fromarray(grid(args)).save(args.out)
    print(f"wrote {args.out}: {args.clips} clips x {args.columns} frames of {args.size}x{args.size}")


if __name__ == "__main__":
    main()
