"""Random access to the videos of one split: the input of every pipeline and of `export`.

A `VideoSource` is a sequence of videos with their names, identities and frame counts, and
reads any frames of any video. Two kinds:
- `RecordSource`: a split of a dataset built by this package (`open_split`), read through
  TFDS's array_record data source, one record per frame;
- `ArraySource`: videos held in memory (small data, tests, generated clips).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mraa_jax.data.readers import as_rgb_uint8, identity_of


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """One video of a split: name, id_sampling identity, frame count, frame size, first record."""

    name: str
    identity: str
    num_frames: int
    height: int
    width: int
    start: int = 0


class VideoSource:
    """Base of the sources: `videos` (VideoInfo per video) plus `frames` and `video` readers."""

    videos: tuple[VideoInfo, ...] = ()

    def __len__(self) -> int:
        return len(self.videos)

    def frames(self, video: int, indices: Sequence[int]) -> np.ndarray:
        """uint8 frames (len(indices), H, W, 3) of video number `video`."""
        raise NotImplementedError

    def video(self, video: int) -> np.ndarray:
        """All frames of video number `video`, uint8 (T, H, W, 3)."""
        return self.frames(video, range(self.videos[video].num_frames))

    def identities(self) -> dict[str, list[int]]:
        """identity -> indices of its videos, identities in sorted order."""
        out: dict[str, list[int]] = {}
        for i, v in enumerate(self.videos):
            out.setdefault(v.identity, []).append(i)
        return dict(sorted(out.items()))

    def index_of(self, name: str) -> int:
        """The index of the video called `name` (also matched without its extension)."""
        if not hasattr(self, "_by_name"):
            by_name = {}
            for i, v in enumerate(self.videos):
                by_name.setdefault(v.name, i)
                by_name.setdefault(Path(v.name).stem if Path(v.name).suffix else v.name, i)
            self._by_name = by_name
        key = name if name in self._by_name else Path(name).stem
        if key not in self._by_name:
            raise KeyError(f"no video named {name!r} in this split ({len(self)} videos)")
        return self._by_name[key]

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) shared by all videos, or None when they differ."""
        sizes = {(v.height, v.width) for v in self.videos}
        return next(iter(sizes)) if len(sizes) == 1 else None

    def _check(self, video: int, indices) -> list[int]:
        if not 0 <= video < len(self.videos):
            raise IndexError(f"video {video} out of range: the split has {len(self.videos)} videos")
        n = self.videos[video].num_frames
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"frame(s) {bad} out of range for video {self.videos[video].name!r} of {n} frames")
        return idx


class ArraySource(VideoSource):
    """Videos held in memory: a mapping name -> frames, or a sequence of frames (named video_00000...).

    Frames may be uint8 or float in [0, 1], grey or RGB(A); they are stored as uint8 RGB.
    """

    def __init__(self, videos: Mapping[str, np.ndarray] | Sequence[np.ndarray]):
        if not isinstance(videos, Mapping):
            videos = {f"video_{i:05d}": v for i, v in enumerate(videos)}
        self._arrays = []
        infos = []
        for name, frames in videos.items():
            frames = np.asarray(frames)
            if frames.ndim == 3:
                frames = frames[..., None]
            frames = as_rgb_uint8(frames, f"<array {name}>")
            if frames.shape[0] == 0:
                raise ValueError(f"<array {name}>: zero frames")
            self._arrays.append(frames)
            infos.append(VideoInfo(name, identity_of(name), frames.shape[0], frames.shape[1], frames.shape[2]))
        self.videos = tuple(infos)

    def frames(self, video, indices):
        return self._arrays[video][self._check(video, indices)]

    def video(self, video):
        self._check(video, [])
        return self._arrays[video]


class RecordSource(VideoSource):
    """One split of a dataset built by this package, read with TFDS's array_record data source.

    Picklable (it reopens the files after unpickling), so grain worker processes can use it.
    """

    def __init__(self, dataset_dir, split: str):
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self._open()

    def _open(self):
        import tensorflow_datasets as tfds

        if not (self.dataset_dir / "dataset_info.json").is_file():
            raise FileNotFoundError(
                f"{self.dataset_dir}: not a built dataset (no dataset_info.json); build it with "
                "build_video_dataset or build_synthetic_dataset, and pass the dataset_dir they return"
            )
        builder = tfds.builder_from_directory(str(self.dataset_dir))
        if self.split not in builder.info.splits:
            raise KeyError(f"{self.dataset_dir}: no split {self.split!r} (has {sorted(builder.info.splits)})")
        table = dict(builder.info.metadata or {}).get("videos", {}).get(self.split)
        if table is None:
            raise ValueError(
                f"{self.dataset_dir}: no video table in metadata.json; not a dataset written by mraa_jax.data"
            )
        infos, start = [], 0
        for name, identity, num_frames, height, width in table:
            infos.append(VideoInfo(name, identity, int(num_frames), int(height), int(width), start))
            start += int(num_frames)
        self._records = builder.as_data_source(split=self.split)
        if len(self._records) != start:
            raise ValueError(
                f"{self.dataset_dir} split {self.split!r}: {len(self._records)} records but the video table "
                f"lists {start} frames; the dataset is damaged, rebuild it"
            )
        self.videos = tuple(infos)

    def __getstate__(self):
        return {"dataset_dir": str(self.dataset_dir), "split": self.split}

    def __setstate__(self, state):
        self.dataset_dir = Path(state["dataset_dir"])
        self.split = state["split"]
        self._open()

    def __repr__(self):
        return f"RecordSource({str(self.dataset_dir)!r}, {self.split!r}: {len(self)} videos)"

    def frames(self, video, indices):
        idx = self._check(video, indices)
        if not idx:
            info = self.videos[video]
            return np.zeros((0, info.height, info.width, 3), np.uint8)
        start = self.videos[video].start
        records = self._records.__getitems__([start + i for i in idx])
        out = np.stack([r["frame"] for r in records])
        if int(records[0]["video"]) != video or int(records[0]["frame_index"]) != idx[0]:
            raise ValueError(
                f"{self.dataset_dir} split {self.split!r}: record order does not match the video table; rebuild it"
            )
        return out


def open_split(dataset_dir, split: str) -> RecordSource:
    """The `split` ('train' or 'test') of a dataset built by this package, as a VideoSource."""
    return RecordSource(dataset_dir, split)


def open_dataset(dataset_dir) -> dict[str, RecordSource]:
    """Every split of a built dataset: {split: RecordSource}."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(dataset_dir))
    return {split: RecordSource(dataset_dir, split) for split in sorted(builder.info.splits)}
