"""grain pipelines over a VideoSource: training pairs, whole test videos, animation pairs.

    train = open_split(dataset_dir, "train")
    batches = training_pairs(train, batch_size=16, seed=0, num_repeats=10, id_sampling=True)
    batch = next(batches)              # {"source", "driving"}: float32 (B, H, W, 3) in [0, 1]
    state = batches.get_state()        # a JSON-serialisable dict; save it with the checkpoint
    batches.set_state(state)           # ...and the same sequence continues after a restart

Training (the original's `FramesDataset` + `DatasetRepeater` + shuffled loader with
drop_last): an epoch is `num_repeats` passes over the videos (or, with id_sampling, over the
identities, each visit taking a random video of that identity), globally shuffled, the last
incomplete global batch dropped. Each sample takes two frames of one video, indices drawn
with replacement and sorted, then augmented (`augment.py`). Everything is a function of
(seed, sample index), so two pipelines with the same arguments give identical batches and a
restored iterator continues exactly.

Sharding: the global batch `batch_size` is split over processes (`shard=(process_index,
process_count)`, default from JAX): process p gets samples p, p+P, ... of each global batch,
B/P of them; `num_devices` checks that this per-process batch divides over the local
devices, and `device_axis=True` reshapes it to (num_devices, B/(P*num_devices), ...) for pmap.
Under jit with a sharded mesh, feed the flat per-process batch to
`jax.make_array_from_process_local_data`.

Workers: `worker_count > 0` runs the sampling in grain worker processes, which need absl
flags parsed (run the program under `absl.app.run`); `num_threads` reads in threads instead.
"""

from __future__ import annotations

import csv as csv_lib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np

from mraa_jax.data.augment import Augmentation, augment_pair
from mraa_jax.data.sources import VideoSource, open_split
from mraa_jax.errors import InputError

log = logging.getLogger(__name__)


def _default_shard() -> tuple[int, int]:
    try:
        import jax

        return jax.process_index(), jax.process_count()
    except ImportError:  # pragma: no cover - jax is a dependency of the library
        return 0, 1


def _resolve_source(source, split: str) -> VideoSource:
    if isinstance(source, (str, Path)):
        return open_split(source, split)
    if not isinstance(source, VideoSource):
        raise TypeError(f"expected a VideoSource or a built dataset directory, got {type(source).__name__}")
    if len(source) == 0:
        raise ValueError("the source holds no videos")
    return source


def _resolve_augmentation(augmentation) -> Augmentation:
    if augmentation is True:
        return Augmentation()
    if augmentation is None or augmentation is False:
        return Augmentation.off()
    if isinstance(augmentation, Augmentation):
        return augmentation
    if isinstance(augmentation, Mapping) or hasattr(augmentation, "to_dict"):
        params = augmentation.to_dict() if hasattr(augmentation, "to_dict") else augmentation
        return Augmentation.from_params(params)
    raise TypeError(
        f"augmentation: expected True/False/None, an Augmentation or the original's augmentation_params, "
        f"got {type(augmentation).__name__}"
    )


def _seeds(seed: int) -> tuple[int, int]:
    """Two independent 32-bit seeds (shuffle, per-sample randomness) from one."""
    a, b = np.random.SeedSequence(int(seed)).generate_state(2)
    return int(a), int(b)


class DataIterator:
    """Iterator over a grain pipeline, with a checkpointable state.

    get_state() -> JSON-serialisable dict; set_state(dict) resumes at that point. The state
    records the pipeline's arguments and is refused by a pipeline built differently.
    """

    def __init__(self, dataset: grain.IterDataset, fingerprint: dict, **info):
        self.dataset = dataset
        self.fingerprint = fingerprint
        self._it = iter(dataset)
        for k, v in info.items():
            setattr(self, k, v)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def get_state(self) -> dict:
        state = {"pipeline": self.fingerprint, "grain": self._it.get_state()}
        json.dumps(state)  # fail here, not at checkpoint time, if grain's state ever stops being JSON
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        theirs = json.loads(json.dumps(state.get("pipeline")))
        ours = json.loads(json.dumps(self.fingerprint))
        if theirs != ours:
            diff = {
                k: (theirs.get(k) if theirs else None, ours.get(k))
                for k in ours
                if not theirs or theirs.get(k) != ours.get(k)
            }
            raise ValueError(f"iterator state was saved by a different pipeline; (saved, this) differ in {diff}")
        self._it.set_state(state["grain"])

    def close(self):
        close = getattr(self._it, "close", None)
        if close:
            close()


def _finish(ds: grain.MapDataset, num_threads: int, worker_count: int) -> grain.IterDataset:
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(1, 2 * num_threads)))
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


class _SamplePair:
    """unit (video or identity index), rng -> {"source", "driving"} float32 (H, W, 3)."""

    def __init__(self, source: VideoSource, groups, augmentation: Augmentation):
        self.source, self.groups, self.augmentation = source, groups, augmentation

    def __call__(self, unit, rng: np.random.Generator):
        unit = int(unit) % (
            len(self.source) if self.groups is None else len(self.groups)
        )  # epochs hold num_repeats passes
        video = unit if self.groups is None else self.groups[unit][int(rng.integers(len(self.groups[unit])))]
        num_frames = self.source.videos[video].num_frames
        indices = np.sort(rng.choice(num_frames, size=2, replace=True))
        pair = augment_pair(self.source.frames(video, indices), self.augmentation, rng)
        return {"source": pair[0], "driving": pair[1]}


class _ToDevices:
    def __init__(self, num_devices: int):
        self.num_devices = num_devices

    def __call__(self, batch):
        return {k: v.reshape((self.num_devices, -1) + v.shape[1:]) for k, v in batch.items()}


def training_pairs(
    source,
    batch_size: int,
    *,
    seed: int = 0,
    num_repeats: int = 1,
    num_epochs: int | None = None,
    id_sampling: bool = False,
    augmentation=True,
    shard: tuple[int, int] | None = None,
    num_devices: int | None = None,
    device_axis: bool = False,
    worker_count: int = 0,
    num_threads: int = 2,
) -> DataIterator:
    """Batches of training pairs {"source", "driving"}: float32 (B/P, H, W, 3) in [0, 1].

    source: a VideoSource, or a built dataset directory (its train split). batch_size: the
    global batch over all processes. num_epochs: None repeats forever. augmentation: True
    (the original's defaults), False/None, an `Augmentation`, or the original's
    `augmentation_params` mapping. num_threads: grain read threads (2 gave +30% on 2 cores;
    order and state do not depend on it). The iterator also has `steps_per_epoch`,
    `local_batch_size`, `epoch_size` (samples per epoch).
    """
    source = _resolve_source(source, "train")
    aug = _resolve_augmentation(augmentation)
    process_index, process_count = shard if shard is not None else _default_shard()
    if not 0 <= process_index < process_count:
        raise ValueError(f"shard: process index {process_index} not in [0, {process_count})")
    if batch_size < 1 or batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of the process count {process_count}")
    local = batch_size // process_count
    if num_devices is not None and local % num_devices:
        raise ValueError(
            f"per-process batch {local} (batch_size {batch_size} / {process_count} processes) "
            f"does not divide over {num_devices} devices"
        )
    if device_axis and num_devices is None:
        raise ValueError("device_axis=True needs num_devices")
    if source.frame_size is None:
        sizes = sorted({(v.height, v.width) for v in source.videos})
        raise ValueError(f"videos have different frame sizes {sizes[:5]}; build the dataset with a frame_shape")
    groups = None
    if id_sampling:
        groups = list(source.identities().values())
    units = len(groups) if groups is not None else len(source)
    epoch = units * int(num_repeats)
    steps = epoch // batch_size
    if steps == 0:
        raise ValueError(
            f"an epoch has {epoch} samples ({units} {'identities' if id_sampling else 'videos'} x "
            f"num_repeats {num_repeats}), fewer than one batch of {batch_size}; raise num_repeats"
        )
    shuffle_seed, sample_seed = _seeds(seed)
    ds = grain.MapDataset.range(epoch).shuffle(seed=shuffle_seed)[: steps * batch_size]  # drop_last per epoch
    ds = ds.repeat(num_epochs)
    ds = ds.random_map(_SamplePair(source, groups, aug), seed=sample_seed)  # seeded by the global sample index
    ds = ds[process_index::process_count].batch(local, drop_remainder=True)
    if device_axis:
        ds = ds.map(_ToDevices(num_devices))
    fingerprint = {
        "kind": "training_pairs",
        "seed": int(seed),
        "batch_size": int(batch_size),
        "num_repeats": int(num_repeats),
        "num_epochs": num_epochs,
        "id_sampling": bool(id_sampling),
        "augmentation": [aug.horizontal_flip, aug.time_flip, aug.brightness, aug.contrast, aug.saturation, aug.hue],
        "shard": [int(process_index), int(process_count)],
        "num_videos": len(source),
        "num_frames": int(sum(v.num_frames for v in source.videos)),
        "worker_count": int(worker_count),
    }
    return DataIterator(
        _finish(ds, num_threads, worker_count),
        fingerprint,
        steps_per_epoch=steps,
        local_batch_size=local,
        epoch_size=steps * batch_size,
    )


class _LoadVideo:
    def __init__(self, source):
        self.source = source

    def __call__(self, index):
        index = int(index)
        return {
            "video": self.source.video(index).astype(np.float32) * np.float32(1 / 255),
            "name": self.source.videos[index].name,
            "index": index,
        }


def test_videos(
    source, *, shard: tuple[int, int] | None = None, worker_count: int = 0, num_threads: int = 0
) -> DataIterator:
    """Whole videos in order, one at a time: {"video": float32 (T, H, W, 3), "name", "index"}.

    source: a VideoSource or a built dataset directory (its test split). With several
    processes, process p gets videos p, p+P, ...
    """
    source = _resolve_source(source, "test")
    process_index, process_count = shard if shard is not None else _default_shard()
    ds = grain.MapDataset.range(len(source))[process_index::process_count].map(_LoadVideo(source))
    fingerprint = {"kind": "test_videos", "num_videos": len(source), "shard": [int(process_index), int(process_count)]}
    return DataIterator(
        _finish(ds, num_threads, worker_count),
        fingerprint,
        num_videos=len(range(len(source))[process_index::process_count]),
    )


def read_pairs_csv(path, source: VideoSource, driving: VideoSource | None = None) -> list[tuple[int, int]]:
    """(source index, driving index) pairs from a CSV with `source` and `driving` columns of video names.

    Names match a video's name with or without its extension. Rows naming unknown videos are
    dropped with a warning (the original drops them silently); none left is an error.
    """
    path = Path(path)
    driving = driving or source
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv_lib.DictReader(f)
            columns = reader.fieldnames or []
            if "source" not in columns or "driving" not in columns:
                raise InputError(f"{path}: needs 'source' and 'driving' columns, found {columns}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the pairs CSV ({e})") from None
    pairs, missing = [], []
    for row in rows:
        try:
            pairs.append((source.index_of(row["source"].strip()), driving.index_of(row["driving"].strip())))
        except KeyError:
            missing.append((row["source"], row["driving"]))
    if missing:
        log.warning(
            "%s: %d of %d pairs name videos not in the dataset, dropped (first: %s)",
            path,
            len(missing),
            len(rows),
            missing[:3],
        )
    if not pairs:
        raise InputError(
            f"{path}: none of its {len(rows)} pairs names videos of this dataset"
            + (f" (first: {missing[0]})" if missing else "")
        )
    return pairs


test_videos.__test__ = False  # a library function, not a pytest test, when imported into a test module


class _LoadPair:
    def __init__(self, pairs, source, driving):
        self.pairs, self.source, self.driving = pairs, source, driving

    def __call__(self, index):
        s, d = self.pairs[int(index)]
        return {
            "source_video": self.source.video(s).astype(np.float32) * np.float32(1 / 255),
            "driving_video": self.driving.video(d).astype(np.float32) * np.float32(1 / 255),
            "source_name": self.source.videos[s].name,
            "driving_name": self.driving.videos[d].name,
        }


def animation_pairs(
    source,
    *,
    csv=None,
    num_pairs: int = 50,
    seed: int = 0,
    driving=None,
    shard: tuple[int, int] | None = None,
    worker_count: int = 0,
    num_threads: int = 0,
) -> DataIterator:
    """Pairs of whole videos for animation: {"source_video", "driving_video"} float32 (T, H, W, 3), and names.

    From `csv` (columns `source`, `driving`), else `num_pairs` distinct (source, driving)
    pairs drawn at random from all videos with `seed` (the original draws them among its
    first num_pairs videos only). `driving`: another VideoSource for the driving videos
    (default: the same). The iterator's `pairs` lists (source, driving) indices.
    """
    source = _resolve_source(source, "test")
    driving_src = _resolve_source(driving, "test") if driving is not None else source
    if csv is not None:
        pairs = read_pairs_csv(csv, source, driving_src)
    else:
        total = len(source) * len(driving_src)
        count = min(int(num_pairs), total)
        flat = np.random.default_rng(seed).choice(total, size=count, replace=False)
        pairs = [(int(i) // len(driving_src), int(i) % len(driving_src)) for i in flat]
    process_index, process_count = shard if shard is not None else _default_shard()
    ds = grain.MapDataset.range(len(pairs))[process_index::process_count].map(_LoadPair(pairs, source, driving_src))
    fingerprint = {
        "kind": "animation_pairs",
        "pairs": len(pairs),
        "seed": int(seed),
        "csv": str(csv) if csv else None,
        "shard": [int(process_index), int(process_count)],
    }
    return DataIterator(_finish(ds, num_threads, worker_count), fingerprint, pairs=pairs)
