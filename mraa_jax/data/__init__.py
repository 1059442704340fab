"""Data for MRAA: readers for the original's video layouts, TFDS builders, grain pipelines.

    from mraa_jax import data

    summary = data.build_synthetic_dataset("~/tensorflow_datasets")        # built-in, no download
    # or: summary = data.build_video_dataset("data/vox-png", "~/tensorflow_datasets")
    train = data.open_split(summary.dataset_dir, "train")
    batches = data.training_pairs(train, batch_size=16, seed=0, num_repeats=10)
    batch = next(batches)   # {"source", "driving"}: float32 (B, H, W, 3) in [0, 1]

Modules, one job each:
    readers      read_video: frame folders, mp4/gif/mov, stacked png/jpg, npy -> uint8 (T, H, W, 3)
    storage      the on-disk format of the builders (one array_record record per frame)
    video_folder TFDS builder for a user's video root (build_video_dataset)
    figures      procedural articulated-figure clips
    synthetic    TFDS builder of the figure clips (build_synthetic_dataset)
    sources      VideoSource: random access to a split (open_split) or to arrays (ArraySource)
    augment      the original's flips and colour jitter
    pipeline     grain pipelines: training_pairs, test_videos, animation_pairs
    export       export_to_folders: any dataset to the original's PNG frame folders

TensorFlow is not needed: the builders use plain uint8 tensor features in array_record.
"""

import importlib

_HOMES = {
    "augment": ["Augmentation", "augment_pair"],
    "export": ["export_to_folders"],
    "figures": ["Clip", "make_clip"],
    "pipeline": ["DataIterator", "animation_pairs", "read_pairs_csv", "test_videos", "training_pairs"],
    "readers": ["VideoReadError", "identity_of", "read_video"],
    "sources": ["ArraySource", "RecordSource", "VideoInfo", "VideoSource", "open_dataset", "open_split"],
    "storage": ["BuildSummary"],
    "synthetic": ["MraaSynthetic", "build_synthetic_dataset"],
    "video_folder": ["DatasetBuildError", "MraaVideoFolder", "build_video_dataset"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """Import a name's module on first use: reading videos needs neither TFDS nor grain."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
