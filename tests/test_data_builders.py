"""TFDS builders (video_folder, synthetic), the records they write and the figures they hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import DRIVING_VIDEO, REPO
from PIL import Image

from mraa_jax.data import figures
from mraa_jax.data.readers import read_video
from mraa_jax.data.sources import open_dataset, open_split
from mraa_jax.data.synthetic import build_synthetic_dataset, config_name
from mraa_jax.data.video_folder import DatasetBuildError, build_video_dataset, split_videos


@pytest.fixture(scope="module")
def frames():
    """Real frames: the fixture's driving.mp4 at 32x32, 24 frames."""
    return read_video(DRIVING_VIDEO, frame_shape=(32, 32))[::5][:24]


def _folder(path: Path, frames):
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{i:07d}.png")


@pytest.fixture(scope="module")
def root(frames, tmp_path_factory):
    """train/ and test/ with frame folders (two identities), an .npy and a gif."""
    r = tmp_path_factory.mktemp("root")
    _folder(r / "train" / "alice#001", frames[:6])
    _folder(r / "train" / "alice#002", frames[6:10])
    _folder(r / "train" / "bob#001", frames[10:17])
    np.save(r / "train" / "carol#001.npy", frames[17:20])
    _folder(r / "test" / "dave#001", frames[20:24])
    iio.imwrite(r / "test" / "erin#001.gif", frames[:5], loop=0, duration=100)
    return r


def test_video_root_records_match_the_readers(root, tmp_path):
    summary = build_video_dataset(root, tmp_path / "tfds")
    assert summary.num_videos == {"train": 4, "test": 2} and not summary.skipped and not summary.reused
    assert summary.num_frames == {"train": 20, "test": 9}
    splits = open_dataset(summary.dataset_dir)
    assert sorted(splits) == ["test", "train"]
    train = splits["train"]
    assert [v.name for v in train.videos] == ["alice#001", "alice#002", "bob#001", "carol#001.npy"]
    assert [v.num_frames for v in train.videos] == [6, 4, 7, 3]
    assert train.identities() == {"alice": [0, 1], "bob": [2], "carol": [3]}
    for i, v in enumerate(train.videos):
        np.testing.assert_array_equal(train.video(i), read_video(root / "train" / v.name))
    np.testing.assert_array_equal(train.frames(2, [5, 0]), read_video(root / "train" / "bob#001")[[5, 0]])
    test = splits["test"]
    np.testing.assert_array_equal(test.video(1), read_video(root / "test" / "erin#001.gif"))
    # written once: a second build reuses the files
    again = build_video_dataset(root, tmp_path / "tfds")
    assert again.reused and again.num_frames == summary.num_frames


def test_video_root_resized_and_read_with_plain_tfds(root, tmp_path):
    import tensorflow_datasets as tfds

    summary = build_video_dataset(root, tmp_path, frame_shape=(16, 24), compress=True)
    assert summary.dataset_dir.parent.parent.name == "mraa_video_folder"
    assert "16x24" in summary.dataset_dir.parent.name
    records = tfds.builder_from_directory(str(summary.dataset_dir)).as_data_source(split="train")
    by_name = tfds.data_source(
        f"mraa_video_folder/{summary.dataset_dir.parent.name}", data_dir=str(tmp_path), split="train", download=False
    )
    assert len(by_name) == len(records) == 20
    first = records[0]
    assert first["frame"].shape == (16, 24, 3) and first["frame"].dtype == np.uint8
    assert first["identity"] == b"alice" and int(first["num_frames"]) == 6 and int(first["frame_index"]) == 0


def test_seeded_80_20_split(frames, tmp_path):
    r = tmp_path / "flat"
    for i in range(10):
        _folder(r / f"id{i % 3}#{i:02d}", frames[i : i + 2])
    a, _ = split_videos(r, seed=0)
    b, _ = split_videos(r, seed=0)
    c, _ = split_videos(r, seed=1)
    assert a == b and len(a["test"]) == 2 and len(a["train"]) == 8
    assert not set(a["test"]) & set(a["train"])
    assert a != c
    summary = build_video_dataset(r, tmp_path / "tfds")
    assert summary.num_videos == {"train": 8, "test": 2}
    assert {v.name for v in open_split(summary.dataset_dir, "test").videos} == {p.name for p in a["test"]}


def test_bad_files_skipped_or_stopping(root, frames, tmp_path):
    import shutil

    r = tmp_path / "with_bad"
    shutil.copytree(root, r)
    (r / "train" / "broken.mp4").write_bytes(os.urandom(500))
    (r / "test" / "empty.mp4").write_bytes(b"")
    _folder(r / "train" / "zed#001", frames[:2])
    (r / "train" / "zed#001" / "0000001.png").write_bytes(b"garbage")
    (r / "train" / "notes.txt").write_text("not a video")
    bad = {str(r / "train" / "broken.mp4"), str(r / "test" / "empty.mp4"), str(r / "train" / "zed#001" / "0000001.png")}

    summary = build_video_dataset(r, tmp_path / "skip", on_error="skip")
    assert {p for p, _ in summary.skipped} == bad
    assert summary.num_videos == {"train": 4, "test": 2}
    assert [str(p) for p in summary.ignored] == [str(r / "train" / "notes.txt")]
    assert "skipped 3 unreadable file(s)" in str(summary)

    with pytest.raises(DatasetBuildError) as info:
        build_video_dataset(r, tmp_path / "stop", on_error="stop")
    message = str(info.value)
    for path in bad:  # every bad file is reported, not only the first
        assert path in message
    assert {p for p, _ in info.value.problems} == bad
    written = list((tmp_path / "stop").rglob("dataset_info.json"))
    assert not written, "a stopped build must not leave a dataset behind"


def test_root_layout_errors(tmp_path, frames):
    with pytest.raises(DatasetBuildError, match="not found"):
        build_video_dataset(tmp_path / "nope", tmp_path / "tfds")
    half = tmp_path / "half"
    _folder(half / "train" / "a", frames[:2])
    with pytest.raises(DatasetBuildError, match="no test/"):
        build_video_dataset(half, tmp_path / "tfds")
    (half / "test").mkdir()
    with pytest.raises(DatasetBuildError, match="test: no videos"):
        build_video_dataset(half, tmp_path / "tfds")
    with pytest.raises(ValueError, match="on_error"):
        build_video_dataset(half, tmp_path / "tfds", on_error="ignore")


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_same_seed_same_bytes(tmp_path):
    kw = dict(num_train=3, num_test=2, frames=6, size=32)
    a = build_synthetic_dataset(tmp_path / "a", seed=5, **kw)
    b = build_synthetic_dataset(tmp_path / "b", seed=5, **kw)
    c = build_synthetic_dataset(tmp_path / "c", seed=6, **kw)
    assert a.dataset_dir.parent.name == config_name(3, 2, 6, 32, 5)
    for split in ("train", "test"):
        fa = sorted(a.dataset_dir.glob(f"*-{split}.array_record-*"))
        fb = sorted(b.dataset_dir.glob(f"*-{split}.array_record-*"))
        assert fa and [f.read_bytes() for f in fa] == [f.read_bytes() for f in fb]
        sa, sc = open_split(a.dataset_dir, split), open_split(c.dataset_dir, split)
        for i in range(len(sa)):
            assert not np.array_equal(sa.video(i), sc.video(i))
    train = open_split(a.dataset_dir, "train")
    assert train.frame_size == (32, 32) and [v.num_frames for v in train.videos] == [6, 6, 6]
    np.testing.assert_array_equal(train.video(1), figures.make_clip(5, "train", 1, 6, 32).frames)


def test_synthetic_readable_by_name_with_tfds(tmp_path):
    import tensorflow_datasets as tfds

    build_synthetic_dataset(tmp_path, num_train=2, num_test=1, frames=3, size=16, seed=0)
    records = tfds.data_source(
        f"mraa_synthetic/{config_name(2, 1, 3, 16, 0)}", data_dir=str(tmp_path), split="test", download=False
    )
    assert len(records) == 3 and records[2]["frame"].shape == (16, 16, 3)


@pytest.fixture(scope="module")
def clips():
    return [figures.make_clip(11, "train", i, num_frames=16, size=64) for i in range(24)]


def test_figures_stay_inside_the_frame(clips):
    for clip in clips:
        border = np.concatenate([clip.masks[:, 0], clip.masks[:, -1], clip.masks[:, :, 0], clip.masks[:, :, -1]], -1)
        assert border.max() < 1 / 255
        assert (clip.masks.reshape(len(clip.masks), -1).max(-1) > 0.99).all()  # a figure in every frame
        assert clip.frames.dtype == np.uint8 and clip.frames.shape == (16, 64, 64, 3)


def test_figures_share_one_body_plan(clips):
    """Upright body, four limbs, one near each diagonal: the same part in the same place in every clip."""
    for clip in clips:
        assert clip.joints.shape[1] == 4
        body = np.degrees(clip.angles[:, 0])
        assert np.all(np.abs(body - 90) < 15 + 20 + 1e-3), (
            "the body stays upright (rest tilt <= 15, swing <= 20 degrees)"
        )
        offsets = clip.joints[0] - clip.centres[0]  # pivots around the body centre, image axes (y down)
        quadrants = {(bool(x > 0), bool(y > 0)) for x, y in offsets}
        assert len(quadrants) == 4, f"one pivot per quadrant of the body, got {offsets.tolist()}"
        limbs = (clip.parts >= 1).sum() / (clip.parts >= 0).sum()
        assert limbs > 0.5, f"the limbs are most of the figure ({limbs:.0%})"


def test_figures_are_articulated_and_moving(clips):
    for clip in clips:
        relative = clip.angles[:, 1:] - clip.angles[:, :1]  # limbs relative to the body...
        swing = np.degrees(relative.max(0) - relative.min(0))
        assert swing.max() > 45, "some limb must turn by tens of degrees over the clip"
        assert (swing > 20).sum() >= 2
        parts = {int(p) for p in np.unique(clip.parts)} - {-1}
        assert len(parts) >= 4  # body and at least three limbs are visible
        # copying the source frame is a poor reconstruction of a frame half a clip later: the pixels
        # whose figure coverage flips outnumber half the figure's area
        flipped = (np.abs(clip.masks[0] - clip.masks[8]) > 0.5).sum()
        assert flipped > 0.5 * (clip.masks[0] > 0.5).sum()


def test_show_synthetic_script(tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "show_synthetic.py"),
            "--out",
            str(out),
            "--clips",
            "2",
            "--columns",
            "3",
            "--frames",
            "6",
            "--zoom",
            "1",
            "--overlay",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    image = iio.imread(out)
    assert image.shape == (2 * (64 + 2), 3 * (64 + 2), 3)
