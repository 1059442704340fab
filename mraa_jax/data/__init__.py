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
from mraa_jax.data.augment import Augmentation, augment_pair
from mraa_jax.data.export import export_to_folders
from mraa_jax.data.figures import Clip, make_clip
from mraa_jax.data.pipeline import DataIterator, animation_pairs, read_pairs_csv, test_videos, training_pairs
from mraa_jax.data.readers import VideoReadError, identity_of, read_video
from mraa_jax.data.sources import ArraySource, RecordSource, VideoInfo, VideoSource, open_dataset, open_split
from mraa_jax.data.storage import BuildSummary
from mraa_jax.data.synthetic import MraaSynthetic, build_synthetic_dataset
from mraa_jax.data.video_folder import DatasetBuildError, MraaVideoFolder, build_video_dataset

__all__ = [
    "Augmentation", "ArraySource", "BuildSummary", "Clip", "DataIterator", "DatasetBuildError", "MraaSynthetic",
    "MraaVideoFolder", "RecordSource", "VideoInfo", "VideoReadError", "VideoSource", "animation_pairs",
    "augment_pair", "build_synthetic_dataset", "build_video_dataset", "export_to_folders", "identity_of",
    "make_clip", "open_dataset", "open_split", "read_pairs_csv", "read_video", "test_videos", "training_pairs",
]
