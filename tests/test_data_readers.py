"""Readers of the original's video layouts (mraa_jax.data.readers), on frames of the real driving.mp4.

Every layout is made from the same 9 frames (driving.mp4 resized to 64x64, every 16th frame)
and must read back as those frames: exactly for the lossless layouts (PNG folder, stacked PNG,
.npy); for the lossy ones, exactly as the codec's own decoder gives them (Pillow for JPEG,
imageio-ffmpeg for H.264), and within the codec's loss on this content (CODEC_LOSS).
Bad inputs must raise VideoReadError naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import DRIVING_VIDEO
from PIL import Image

from mraa_jax.data.readers import VideoReadError, frame_files, identity_of, list_videos, read_frames, read_video


@pytest.fixture(scope="module")
def clip():
    return read_video(DRIVING_VIDEO, frame_shape=(64, 64))[::16]


def _write_folder(folder: Path, frames, ext, **save):
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:07d}.{ext}", **save)
    return folder


# Mean absolute error (0..255) each lossy codec may add on these 64x64 frames of a detailed
# photograph: measured 3.46 (JPEG folder), 3.55 (stacked JPEG), 6.27 (H.264 at imageio-ffmpeg's
# default quality, .mp4 and .mov alike); GIF's 256-colour palette stays below 3.
CODEC_LOSS = {"jpeg": 4.5, "gif": 3.0, "h264": 8.0}


def _jpeg_frames(files) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@pytest.fixture(scope="module")
def layouts(clip, tmp_path_factory):
    """{layout: (path, mean-abs tolerance in 0..255 units, the codec's own decoding or None)},
    all holding `clip`."""
    d = tmp_path_factory.mktemp("layouts")
    jpg_folder = _write_folder(d / "jpg_folder", clip, "jpg", quality=95)
    out = {
        "png_folder": (_write_folder(d / "png_folder", clip, "png"), 0.0, None),
        "jpg_folder": (jpg_folder, CODEC_LOSS["jpeg"], _jpeg_frames(sorted(jpg_folder.iterdir()))),
    }
    Image.fromarray(np.concatenate(list(clip), 1)).save(d / "stacked.png")
    out["stacked_png"] = (d / "stacked.png", 0.0, None)
    Image.fromarray(np.concatenate(list(clip), 1)).save(d / "stacked.jpg", quality=95)
    stacked = _jpeg_frames([d / "stacked.jpg"])[0]
    out["stacked_jpg"] = (d / "stacked.jpg", CODEC_LOSS["jpeg"], np.stack(np.split(stacked, len(clip), axis=1)))
    np.save(d / "array.npy", clip)
    out["npy"] = (d / "array.npy", 0.0, None)
    iio.imwrite(d / "clip.gif", clip, loop=0, duration=100)
    out["gif"] = (d / "clip.gif", CODEC_LOSS["gif"], None)
    for ext in ("mp4", "mov"):  # imageio-ffmpeg, a dependency
        iio.imwrite(d / f"clip.{ext}", clip, fps=10)
        out[ext] = (d / f"clip.{ext}", CODEC_LOSS["h264"], iio.imread(d / f"clip.{ext}"))
    return out


@pytest.mark.parametrize(
    "layout", ["png_folder", "jpg_folder", "stacked_png", "stacked_jpg", "npy", "gif", "mp4", "mov"]
)
def test_every_layout_gives_the_same_frames(layouts, clip, layout):
    path, tolerance, decoded = layouts[layout]
    frames = read_video(path, frame_shape=(64, 64) if layout.startswith("stacked") else None)
    assert frames.shape == clip.shape and frames.dtype == np.uint8
    if decoded is not None:
        np.testing.assert_array_equal(frames, decoded)
    error = np.abs(frames.astype(np.int16) - clip).mean()
    if tolerance == 0:
        np.testing.assert_array_equal(frames, clip)
    else:
        assert error <= tolerance, f"{layout}: mean abs error {error:.2f} > {tolerance}"


def test_real_mp4_full_and_resized():
    frames = read_video(DRIVING_VIDEO)
    assert frames.shape == (133, 384, 384, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], iio.imread(DRIVING_VIDEO, index=0))
    small = read_video(DRIVING_VIDEO, frame_shape=(32, 48, 3))
    assert small.shape == (133, 32, 48, 3)
    # the resize is a faithful downscale, not a crop
    assert abs(float(small.mean()) - float(frames.mean())) < 2.0


def test_stacked_default_square_and_resized_folder(layouts, clip):
    path, *_ = layouts["stacked_png"]
    np.testing.assert_array_equal(read_video(path), clip)  # frame width defaults to the height
    folder, *_ = layouts["png_folder"]
    assert read_video(folder, frame_shape=(32, 32)).shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(read_frames(folder, [4, 1]), clip[[4, 1]])


def test_grey_alpha_palette_become_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (3, 8, 8), dtype=np.uint8)
    rgba = rng.integers(0, 255, (3, 8, 8, 4), dtype=np.uint8)
    _write_folder(tmp_path / "grey", grey, "png")
    _write_folder(tmp_path / "rgba", rgba, "png")
    (tmp_path / "la").mkdir()
    for i in range(3):
        Image.fromarray(np.stack([grey[i], rgba[i, ..., 3]], -1), "LA").save(tmp_path / "la" / f"{i}.png")
    (tmp_path / "pal").mkdir()
    for i in range(3):
        Image.fromarray(rgba[i, ..., :3]).quantize(16).save(tmp_path / "pal" / f"{i}.png")
    np.save(tmp_path / "grey.npy", grey)

    for name in ("grey", "la", "grey.npy"):
        out = read_video(tmp_path / name)
        assert out.shape == (3, 8, 8, 3)
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(read_video(tmp_path / "rgba"), rgba[..., :3])
    pal = read_video(tmp_path / "pal")
    assert pal.shape == (3, 8, 8, 3) and pal.dtype == np.uint8


def test_frames_in_natural_name_order(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(folder / f"frame{i}.png")
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    assert [p.name for p in frame_files(folder)] == ["frame1.png", "frame2.png", "frame10.png"]
    assert read_video(folder)[:, 0, 0, 0].tolist() == [1, 2, 10]


def test_identity_and_listing(tmp_path):
    assert identity_of("id10001#7w0IBEWc9Qw#000993#001143.mp4") == "id10001"
    assert identity_of("plain.mp4") == "plain.mp4"
    (tmp_path / "a#1").mkdir()
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "c.txt").write_text("")
    (tmp_path / ".DS_Store").write_text("")
    videos, other = list_videos(tmp_path)
    assert [p.name for p in videos] == ["a#1", "b.mp4"] and [p.name for p in other] == ["c.txt"]


# ----------------------------------------------------------------------------- bad inputs


def _expect_error(path, match, **kw):
    with pytest.raises(VideoReadError, match=match) as info:
        read_video(path, **kw)
    assert str(path) in str(info.value), f"message does not name {path}: {info.value}"
    return info.value


def test_corrupt_frame_is_named(tmp_path, clip):
    folder = _write_folder(tmp_path / "v", clip[:3], "png")
    bad = folder / "0000001.png"
    bad.write_bytes(os.urandom(300))
    err = _expect_error(bad, "not a readable image")
    assert err.path == bad
    err = _expect_error(folder, "not a readable image")  # reading the folder names the bad frame
    assert err.path == bad


def test_truncated_png(tmp_path, clip):
    folder = _write_folder(tmp_path / "v", clip[:2], "png")
    frame = folder / "0000000.png"
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    _expect_error(folder, "corrupt|not a readable")
    with pytest.raises(VideoReadError) as info:
        read_video(folder)
    assert str(frame) in str(info.value)


def test_empty_and_corrupt_video_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _expect_error(empty, "empty file")
    junk = tmp_path / "junk.mov"
    junk.write_bytes(os.urandom(4000))
    _expect_error(junk, "cannot decode video")
    gif = tmp_path / "junk.gif"
    gif.write_bytes(b"GIF89a" + os.urandom(100))
    _expect_error(gif, "cannot decode video")
    _expect_error(tmp_path / "missing.mp4", "no such file")


def test_truncated_mp4(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(DRIVING_VIDEO.read_bytes()[:2000])
    _expect_error(cut, "cannot decode video")


def test_zero_frames(tmp_path):
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    (folder / "readme.txt").write_text("no frames here")
    _expect_error(folder, "zero frames")
    np.save(tmp_path / "none.npy", np.zeros((0, 8, 8, 3), np.uint8))
    _expect_error(tmp_path / "none.npy", "zero frames")


def test_wrong_channel_count(tmp_path):
    for channels in (2, 5):
        path = tmp_path / f"c{channels}.npy"
        np.save(path, np.zeros((2, 8, 8, channels), np.uint8))
        _expect_error(path, f"wrong channel count {channels}")


def test_stacked_width_not_a_multiple(tmp_path):
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((64, 64 * 3 + 10, 3), np.uint8)).save(path)
    _expect_error(path, "not a multiple of the frame width 64")
    _expect_error(path, "not a multiple of the frame width 64", frame_shape=(64, 64))
    _expect_error(path, "frames 32 high", frame_shape=(32, 32))


def test_mixed_frame_sizes_and_unsupported_type(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "0.png")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(folder / "1.png")
    err = _expect_error(folder, "differs from the folder's first frame")
    assert err.path == folder / "1.png"
    assert read_video(folder, frame_shape=(8, 8)).shape == (2, 8, 8, 3)  # resizing makes them agree
    other = tmp_path / "clip.xyz"
    other.write_bytes(b"123")
    _expect_error(other, "unsupported file type")
