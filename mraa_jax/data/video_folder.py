"""A TFDS builder for a user's video root in the original's layout, written once as array_record.

    summary = build_video_dataset("data/vox-png", data_dir="~/tensorflow_datasets")
    print(summary)                       # videos and frames per split, skipped files
    train = open_split(summary.dataset_dir, "train")

The root holds `train/` and `test/` folders of videos; otherwise all videos directly in the
root are split 80/20 by a seeded shuffle of the videos (as the original: by video, not by
identity). A video is any layout `readers.read_video` reads. The dataset goes to
`<data_dir>/mraa_video_folder/<name>/1.0.0`, name defaulting to the root's folder name (plus
the frame size when resizing); building again with the same arguments reuses it. Once built,
plain TFDS reads it too: `tfds.data_source("mraa_video_folder/<name>", data_dir=...)` (after
importing this module), or `tfds.builder_from_directory(dataset_dir)`.

Unreadable files are all reported: with on_error='skip' they are left out and listed in the
summary (and in the dataset's metadata.json); with on_error='stop' every file is still tried,
then `DatasetBuildError` lists all bad files and nothing is written.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from mraa_jax.data import storage
from mraa_jax.data.readers import frame_hw, identity_of, list_videos, read_video
from mraa_jax.errors import InputError

log = logging.getLogger(__name__)


class DatasetBuildError(InputError):
    """A dataset could not be built; `problems` lists (path, problem) of every bad input."""

    def __init__(self, message: str, problems=()):
        self.problems = list(problems)
        if len(self.problems) == 1:  # one line
            message += f": {self.problems[0][0]}: {self.problems[0][1]}"
        elif self.problems:
            message += "\n" + "\n".join(f"  {p}: {m}" for p, m in self.problems)
        super().__init__(message)


def split_videos(root, seed: int = 0, test_fraction: float = 0.2) -> tuple[dict[str, list[Path]], list[Path]]:
    """({'train': [...], 'test': [...]}, ignored files) for a dataset root.

    Uses root/train and root/test when present; else a seeded shuffle of the root's videos,
    with round(test_fraction * n) (at least 1) of them for test.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetBuildError(f"{root}: dataset root not found")
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        if not (train_dir.is_dir() and test_dir.is_dir()):
            missing = test_dir if train_dir.is_dir() else train_dir
            raise DatasetBuildError(
                f"{root}: has {'train' if train_dir.is_dir() else 'test'}/ but no {missing.name}/; "
                "give both, or neither (then the videos in the root are split 80/20)"
            )
        train, ignored_train = list_videos(train_dir)
        test, ignored_test = list_videos(test_dir)
        splits, ignored = {"train": train, "test": test}, ignored_train + ignored_test
    else:
        videos, ignored = list_videos(root)
        if len(videos) < 2:
            raise DatasetBuildError(
                f"{root}: found {len(videos)} video(s); an 80/20 split needs at least 2 "
                "(or give train/ and test/ folders)"
            )
        order = np.random.default_rng(seed).permutation(len(videos))
        num_test = min(len(videos) - 1, max(1, int(round(test_fraction * len(videos)))))
        test_set = set(order[:num_test].tolist())
        splits = {
            "train": [v for i, v in enumerate(videos) if i not in test_set],
            "test": [v for i, v in enumerate(videos) if i in test_set],
        }
    for split, videos in splits.items():
        if not videos:  # only possible with train/ and test/ folders: the 80/20 split fills both
            raise DatasetBuildError(f"{root / split}: no videos")
    return splits, ignored


class MraaVideoFolder(tfds.core.GeneratorBasedBuilder):
    """Frames of the videos under a root (original layout), one array_record per split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One record per frame; video table in metadata.json."}
    code_path = None  # nothing to download, so no checksums file (and tfds 4.9 needs importlib_resources to find one)

    def __init__(
        self,
        *,
        root=None,
        frame_shape=None,
        on_error: str = "skip",
        split_seed: int = 0,
        compress: bool = False,
        num_workers: int = 4,
        name: str | None = None,
        config=None,
        **kwargs,
    ):
        """root=None makes a reader of an already built dataset, found by `name` (or TFDS's `config`
        string, as in `tfds.data_source("mraa_video_folder/<name>", data_dir=...)`)."""
        if on_error not in ("skip", "stop"):
            raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
        if root is None and name is None and not isinstance(config, str):
            raise ValueError("MraaVideoFolder needs root= (to build) or name= (to read a built dataset)")
        self.root = Path(root).expanduser().resolve() if root is not None else None
        self.hw = frame_hw(frame_shape)
        self.on_error = on_error
        self.split_seed = int(split_seed)
        self.compress = bool(compress)
        self.num_workers = int(num_workers)
        config_name = (
            name
            or (config if isinstance(config, str) else None)
            or (self.root.name + (f"_{self.hw[0]}x{self.hw[1]}" if self.hw else ""))
        )
        config_name = re.sub(r"[^A-Za-z0-9_-]+", "_", config_name).strip("_") or "videos"
        config = tfds.core.BuilderConfig(name=config_name, description=f"videos under {self.root}")
        kwargs.setdefault("file_format", "array_record")
        super().__init__(config=config, **kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Frames of a video root in the MRAA layout (mraa_jax.data.video_folder).",
            features=storage.features(self.compress),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        if self.root is None:
            raise DatasetBuildError(f"{self.data_dir}: not built yet, and no root= was given to build it from")
        splits, ignored = split_videos(self.root, self.split_seed)
        self._problems = []
        self._remaining = len(splits)
        meta = self.info.metadata
        meta.update(
            {
                "format_version": storage.FORMAT_VERSION,
                "root": str(self.root),
                "frame_shape": list(self.hw) if self.hw else None,
                "split_seed": self.split_seed,
                "videos": {},
                "summary": {"skipped": [], "ignored": [str(p) for p in ignored]},
            }
        )
        for p in ignored:
            log.warning("%s: not a video (unsupported file type), ignored", p)
        return {split: self._generate_examples(split, videos) for split, videos in splits.items()}

    def _generate_examples(self, split, videos):
        writer = storage.SplitWriter()
        read = lambda path: read_video(path, self.hw)  # noqa: E731
        for path, result in storage.ordered_parallel(read, videos, self.num_workers):
            if isinstance(result, Exception):
                problem = getattr(result, "problem", None) or f"{type(result).__name__}: {result}"
                where = getattr(result, "path", path)
                self._problems.append((str(where), problem))
                log.warning("%s: %s", where, problem)
                continue
            yield from writer.records(path.name, identity_of(path.name), result)
        self.info.metadata["videos"][split] = writer.table
        self.info.metadata["summary"]["skipped"] = [list(p) for p in self._problems]
        self._remaining -= 1
        if self._problems and self.on_error == "stop" and self._remaining == 0:
            raise DatasetBuildError(
                f"{self.root}: {len(self._problems)} unreadable file(s); nothing written "
                "(on_error='skip' leaves them out instead)",
                self._problems,
            )
        if not writer.table:
            raise DatasetBuildError(f"{self.root}: no readable video in the {split} split", self._problems)


def build_video_dataset(
    root,
    data_dir,
    frame_shape=None,
    on_error: str = "skip",
    *,
    name: str | None = None,
    split_seed: int = 0,
    compress: bool = False,
    num_workers: int = 4,
) -> storage.BuildSummary:
    """Write the videos under `root` as a TFDS dataset in `data_dir` (once) and summarise it.

    frame_shape: None (stored size) or (H, W[, 3]) to resize every frame. on_error: 'skip'
    or 'stop' (see module doc). compress: zlib the frames (smaller, slightly slower reads).
    num_workers: threads decoding videos ahead of the writer. Returns a BuildSummary whose
    `dataset_dir` is what `open_split` takes.
    """
    builder = MraaVideoFolder(
        root=root,
        frame_shape=frame_shape,
        on_error=on_error,
        split_seed=split_seed,
        compress=compress,
        num_workers=num_workers,
        name=name,
        data_dir=str(Path(data_dir).expanduser()),
    )
    dataset_dir = Path(builder.data_dir)
    if (dataset_dir / "dataset_info.json").is_file():
        stored_root = dict(builder.info.metadata or {}).get("root")
        if stored_root is not None and stored_root != str(builder.root):
            raise DatasetBuildError(
                f"{dataset_dir} already holds the videos of {stored_root}, not {builder.root}; "
                "pass name=... or another data_dir"
            )
    return storage.prepare(builder)
