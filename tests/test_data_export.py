"""Export to the original's folder layout (mraa_jax.data.export) and back through the builder."""

from __future__ import annotations

import numpy as np
import pytest

from mraa_jax.data.export import export_to_folders
from mraa_jax.data.readers import read_video
from mraa_jax.data.sources import ArraySource, open_dataset
from mraa_jax.data.synthetic import build_synthetic_dataset
from mraa_jax.data.video_folder import build_video_dataset


def test_export_round_trip_is_lossless(tmp_path):
    built = build_synthetic_dataset(tmp_path / "tfds", num_train=3, num_test=2, frames=4, size=32, seed=2)
    written = export_to_folders(built.dataset_dir, tmp_path / "folders")
    assert written == {"test": 2, "train": 3}
    frames = sorted((tmp_path / "folders" / "train" / "clip_00001").iterdir())
    assert [f.name for f in frames] == [f"{i:07d}.png" for i in range(4)]

    rebuilt = build_video_dataset(tmp_path / "folders", tmp_path / "tfds2")
    a, b = open_dataset(built.dataset_dir), open_dataset(rebuilt.dataset_dir)
    for split in ("train", "test"):
        assert [v.name for v in a[split].videos] == [v.name for v in b[split].videos]
        for i in range(len(a[split])):
            np.testing.assert_array_equal(a[split].video(i), b[split].video(i))


def test_export_sources_names_and_overwrite(tmp_path):
    rng = np.random.default_rng(0)
    src = ArraySource(
        {"id1#a.mp4": rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8), "sub/dir": np.zeros((2, 8, 8, 3))}
    )
    export_to_folders({"train": src}, tmp_path)
    np.testing.assert_array_equal(read_video(tmp_path / "train" / "id1#a.mp4"), src.video(0))  # a folder, as vox-png
    assert (tmp_path / "train" / "sub_dir" / "0000001.png").is_file()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_to_folders({"train": src}, tmp_path)
    export_to_folders({"train": src}, tmp_path, overwrite=True)
    with pytest.raises(KeyError, match="no split"):
        export_to_folders({"train": src}, tmp_path, splits=["test"])
