"""Export a dataset to the original's folder layout: <out>/<split>/<video name>/<%07d>.png.

This is the layout the original's `FramesDataset` reads fastest (and what its VoxCeleb and
TaiChi preprocessing writes), so the same data can be fed to the original code or to other
tools. Frames are lossless PNG, so building a dataset from the export gives the same bytes.

    export_to_folders(summary.dataset_dir, "exported/")          # every split of a built dataset
    export_to_folders({"train": src_a, "test": src_b}, "exported/")
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from mraa_jax.data.sources import VideoSource, open_dataset


def _folder_name(name: str) -> str:
    safe = re.sub(r"[/\\\x00]", "_", name).strip()
    if safe in ("", ".", ".."):
        raise ValueError(f"video name {name!r} cannot be a folder name")
    return safe.lstrip(".") or "_"


def export_to_folders(dataset, out_dir, *, splits=None, overwrite: bool = False, compress_level: int = 1) -> dict:
    """Write every video of `dataset` as a folder of PNG frames; returns {split: videos written}.

    dataset: a built dataset directory, or a mapping split -> VideoSource. splits: a subset
    of split names (default all). Existing video folders are an error unless overwrite=True
    (then they are replaced frame by frame; stale extra frames are removed). compress_level:
    PNG zlib level 0-9 (1 is fast and still lossless).
    """
    from PIL import Image

    sources: Mapping[str, VideoSource] = open_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    if splits is not None:
        unknown = set(splits) - set(sources)
        if unknown:
            raise KeyError(f"no split(s) {sorted(unknown)} in the dataset (has {sorted(sources)})")
        sources = {s: sources[s] for s in splits}
    out_dir = Path(out_dir)
    written = {}
    for split, source in sources.items():
        names = [_folder_name(v.name) for v in source.videos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"split {split!r}: several videos map to the same folder name: {dupes[:5]}")
        for index, folder in enumerate(names):
            target = out_dir / split / folder
            if target.exists():
                if not overwrite:
                    raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
                for stale in target.glob("*.png"):
                    stale.unlink()
            target.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(source.video(index)):
                Image.fromarray(frame).save(target / f"{t:07d}.png", compress_level=compress_level)
        written[split] = len(names)
    return written
