"""The on-disk format shared by this package's TFDS builders: one record per frame.

Each split is an array_record file of frames in video order (shuffling disabled), so that
the two frames of a training pair are two random-access reads instead of a whole video.
Features are plain `tfds.features.Tensor`s (no TensorFlow needed to write or read):

    frame        uint8 (H, W, 3)   raw bytes, or zlib-compressed when the builder says so
    video        int32             index of the video in its split
    frame_index  int32             index of the frame in its video
    num_frames   int32             frames in the video
    name         str               the video's file/folder name (or a generated name)
    identity     str               the id_sampling identity (name before '#')

The dataset's `metadata.json` (TFDS `MetadataDict`) holds the video table of each split,
{"videos": {split: [[name, identity, num_frames, height, width], ...]}}, so that a reader
finds a video's records without scanning them, plus what the builder reports (`summary`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


def features(compress: bool):
    """The FeaturesDict of a frame record."""
    import tensorflow_datasets as tfds

    t = tfds.features.Tensor
    return tfds.features.FeaturesDict(
        {
            "frame": t(shape=(None, None, 3), dtype=np.uint8, encoding="zlib" if compress else "bytes"),
            "video": t(shape=(), dtype=np.int32),
            "frame_index": t(shape=(), dtype=np.int32),
            "num_frames": t(shape=(), dtype=np.int32),
            "name": t(shape=(), dtype=np.str_),
            "identity": t(shape=(), dtype=np.str_),
        }
    )


@dataclasses.dataclass
class SplitWriter:
    """Turns whole videos into (key, record) pairs and keeps the split's video table.

    Keys are consecutive integers: with TFDS shuffling disabled, records are stored in key
    order, so a video's frames are the records [start, start + num_frames).
    """

    table: list = dataclasses.field(default_factory=list)
    next_key: int = 0

    def records(self, name: str, identity: str, frames: np.ndarray) -> Iterator[tuple[int, dict]]:
        video = len(self.table)
        num_frames, height, width = (int(s) for s in frames.shape[:3])
        self.table.append([name, identity, num_frames, height, width])
        for i in range(num_frames):
            yield (
                self.next_key,
                {
                    "frame": frames[i],
                    "video": video,
                    "frame_index": i,
                    "num_frames": num_frames,
                    "name": name,
                    "identity": identity,
                },
            )
            self.next_key += 1


@dataclasses.dataclass
class BuildSummary:
    """What a dataset build produced: where, how much, what was skipped and how long it took."""

    dataset_dir: Path
    num_videos: dict
    num_frames: dict
    skipped: list  # [(path, problem)], files that could not be read
    ignored: list  # files that are not videos (unsupported extension)
    seconds: float
    reused: bool = False  # the dataset existed already and was not rebuilt

    def __str__(self):
        lines = [
            f"dataset at {self.dataset_dir}"
            + (" (already built, reused)" if self.reused else f" built in {self.seconds:.1f} s")
        ]
        for split in self.num_videos:
            lines.append(f"  {split}: {self.num_videos[split]} videos, {self.num_frames[split]} frames")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable file(s):")
            lines += [f"    {path}: {problem}" for path, problem in self.skipped]
        if self.ignored:
            lines.append(
                f"  ignored {len(self.ignored)} file(s) that are not videos: "
                + ", ".join(str(p) for p in self.ignored[:5])
                + (" ..." if len(self.ignored) > 5 else "")
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["dataset_dir"] = str(self.dataset_dir)
        d["skipped"] = [[str(p), m] for p, m in self.skipped]
        d["ignored"] = [str(p) for p in self.ignored]
        return d


def prepare(builder) -> BuildSummary:
    """Run `builder.download_and_prepare()` (a no-op when already written) and summarise it."""
    start = time.perf_counter()
    dataset_dir = Path(builder.data_dir)
    reused = (dataset_dir / "dataset_info.json").is_file()
    builder.download_and_prepare()
    meta = dict(builder.info.metadata or {})
    videos = meta.get("videos", {})
    report = meta.get("summary", {})
    return BuildSummary(
        dataset_dir=Path(builder.data_dir),
        num_videos={s: len(t) for s, t in videos.items()},
        num_frames={s: int(sum(row[2] for row in t)) for s, t in videos.items()},
        skipped=[tuple(x) for x in report.get("skipped", [])],
        ignored=list(report.get("ignored", [])),
        seconds=time.perf_counter() - start,
        reused=reused,
    )


def ordered_parallel(fn, items: Iterable, num_workers: int, lookahead: int | None = None):
    """fn over items in order, with up to num_workers threads reading ahead (PIL/ffmpeg decoding
    releases the GIL). Yields (item, result-or-exception)."""
    items = list(items)
    if num_workers <= 1:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as e:  # noqa: BLE001 - handed to the caller, which decides
                yield item, e
        return
    from concurrent.futures import ThreadPoolExecutor

    def safe(item):
        try:
            return fn(item)
        except Exception as e:  # noqa: BLE001
            return e

    lookahead = lookahead or 2 * num_workers
    with ThreadPoolExecutor(num_workers) as pool:
        futures = []
        for item in items:
            futures.append((item, pool.submit(safe, item)))
            if len(futures) > lookahead:
                it, fut = futures.pop(0)
                yield it, fut.result()
        for it, fut in futures:
            yield it, fut.result()
