"""The built-in synthetic dataset: clips of articulated figures (`figures.py`) as a TFDS builder.

No download: every clip is generated from (seed, split, index), so the same arguments give
the same bytes. Written once per parameter set to
`<data_dir>/mraa_synthetic/s<size>_f<frames>_train<n>_test<m>_seed<seed>/<version>`.

    summary = build_synthetic_dataset("~/tensorflow_datasets")          # 1000 + 50 clips, 32 frames, 64x64
    train = open_split(summary.dataset_dir, "train")

The default parameter set is also the builder's default config, so plain TFDS reads it too:
`tfds.data_source("mraa_synthetic", data_dir=..., split="train")` (after importing this module).
Each clip is its own identity; names are clip_00000, clip_00001, ...
"""

from __future__ import annotations

import re
from pathlib import Path

import tensorflow_datasets as tfds

from mraa_jax.data import storage
from mraa_jax.data.figures import make_clip

DEFAULTS = {"num_train": 1000, "num_test": 50, "num_frames": 32, "size": 64, "seed": 0}
_NAME = re.compile(r"^s(\d+)_f(\d+)_train(\d+)_test(\d+)_seed(\d+)$")


def config_name(num_train, num_test, num_frames, size, seed) -> str:
    """The TFDS config name of a parameter set (the folder its files go to)."""
    return f"s{size}_f{num_frames}_train{num_train}_test{num_test}_seed{seed}"


def _params_from_name(name: str) -> dict:
    if name == "default":
        return dict(DEFAULTS)
    m = _NAME.match(name)
    if not m:
        raise ValueError(
            f"unknown mraa_synthetic config {name!r}; expected 'default' or e.g. {config_name(**DEFAULTS)!r}"
        )
    size, num_frames, num_train, num_test, seed = (int(g) for g in m.groups())
    return {"num_train": num_train, "num_test": num_test, "num_frames": num_frames, "size": size, "seed": seed}


class MraaSynthetic(tfds.core.GeneratorBasedBuilder):
    """Procedural clips of 2-D articulated figures (train and test splits)."""

    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {
        "1.0.0": "Figures with 3-5 limbs of 1-2 segments; one record per frame.",
        "1.1.0": "Fewer, thicker, larger parts (3-4 limbs, 30% of two segments), so that a few regions can find them.",
        "1.2.0": "Rigid one-segment limbs only, a longer path across the frame (at least 35% of it per axis), "
        "smooth backgrounds only (no checks; coarser stripes).",
        "1.3.0": "One body plan: a small upright body and four long, thick limbs at its diagonals; the figure only "
        "has to fit in the frame (no minimum travel); light backgrounds only.",
    }
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=config_name(**DEFAULTS), description="the default parameter set")]
    code_path = None  # nothing to download, so no checksums file (and tfds 4.9 needs importlib_resources to find one)

    def __init__(self, *, config=None, num_train=None, num_test=None, num_frames=None, size=None, seed=None, **kwargs):
        params = (
            _params_from_name(config if isinstance(config, str) else config.name)
            if config is not None
            else dict(DEFAULTS)
        )
        given = {"num_train": num_train, "num_test": num_test, "num_frames": num_frames, "size": size, "seed": seed}
        params.update({k: int(v) for k, v in given.items() if v is not None})
        if min(params["num_train"], params["num_test"], params["num_frames"]) < 1 or params["size"] < 16:
            raise ValueError(f"need at least one clip per split, one frame, and size >= 16; got {params}")
        self.params = params
        name = config_name(**params)
        config = next((c for c in self.BUILDER_CONFIGS if c.name == name), None) or tfds.core.BuilderConfig(
            name=name, description="synthetic articulated figures"
        )
        kwargs.setdefault("file_format", "array_record")
        super().__init__(config=config, **kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="2-D articulated figures (mraa_jax.data.figures), generated from a seed.",
            features=storage.features(compress=True),  # flat colours compress ~5x; decoding costs little
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        self.info.metadata.update(
            {
                "format_version": storage.FORMAT_VERSION,
                "synthetic": self.params,
                "videos": {},
                "summary": {"skipped": [], "ignored": []},
            }
        )
        return {
            "train": self._generate_examples("train", self.params["num_train"]),
            "test": self._generate_examples("test", self.params["num_test"]),
        }

    def _generate_examples(self, split, count):
        writer = storage.SplitWriter()
        p = self.params
        for i in range(count):
            name = f"clip_{i:05d}"
            clip = make_clip(p["seed"], split, i, p["num_frames"], p["size"])
            yield from writer.records(name, name, clip.frames)
        self.info.metadata["videos"][split] = writer.table


def build_synthetic_dataset(
    data_dir,
    num_train: int = DEFAULTS["num_train"],
    num_test: int = DEFAULTS["num_test"],
    frames: int = DEFAULTS["num_frames"],
    size: int = DEFAULTS["size"],
    seed: int = DEFAULTS["seed"],
) -> storage.BuildSummary:
    """Generate the synthetic dataset into `data_dir` (once per parameter set) and summarise it.

    frames: frames per clip (the motion spans the clip whatever the count); size: square
    frame side in pixels. Build time and size: docs/synthetic_dataset.md.
    Returns a BuildSummary whose `dataset_dir` is what `open_split` takes.
    """
    builder = MraaSynthetic(
        num_train=num_train,
        num_test=num_test,
        num_frames=frames,
        size=size,
        seed=seed,
        data_dir=str(Path(data_dir).expanduser()),
    )
    return storage.prepare(builder)
