"""Readers for the original's video layouts, returning uint8 RGB arrays (T, H, W, 3).

Layouts (those the original's dataset reader accepts, and .npy):
- a folder of frames (.png/.jpg/.jpeg/.bmp), in natural name order ("2.png" before "10.png";
  the original's zero-padded names sort the same either way);
- a video file: .mp4, .gif, .mov (also .avi, .mkv, .webm through ffmpeg);
- one .png/.jpg image with the frames side by side (a "stacked" strip, as the original's
  evaluation writes); the frame width is frame_shape's width, or the image height when no
  frame_shape is given (square frames);
- a .npy array (T, H, W, C) of uint8, for videos made by code.

Grey becomes RGB, alpha is dropped, frames are optionally resized to `frame_shape` (bilinear,
anti-aliased when shrinking). Anything that cannot be read raises `VideoReadError`, whose
message starts with the offending file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mraa_jax.errors import InputError

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".gif", ".mov", ".avi", ".mkv", ".webm")
STACKED_EXTENSIONS = (".png", ".jpg", ".jpeg")
ARRAY_EXTENSIONS = (".npy",)


class VideoReadError(InputError):
    """A video (or one of its frames) could not be read; `path` names it, `problem` says why."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def identity_of(name: str) -> str:
    """The identity used by id_sampling: the part of a video's file name before '#'."""
    return Path(name).name.split("#")[0]


def frame_hw(frame_shape) -> tuple[int, int] | None:
    """(H, W) from a frame_shape given as None, (H, W) or (H, W, 3)."""
    if frame_shape is None:
        return None
    shape = tuple(int(s) for s in frame_shape)
    if len(shape) == 3 and shape[2] == 3:
        shape = shape[:2]
    if len(shape) != 2 or min(shape) <= 0:
        raise InputError(f"frame_shape must be (H, W) or (H, W, 3) with positive sizes, got {tuple(frame_shape)}")
    return shape


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder) -> list[Path]:
    """The frame images of a frame folder, in natural name order (hidden files ignored)."""
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FRAME_EXTENSIONS
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def is_video(path) -> bool:
    """Whether `path` is in a layout `read_video` understands (frame folder or supported file)."""
    path = Path(path)
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return True
    suffix = path.suffix.lower()
    return suffix in VIDEO_EXTENSIONS + STACKED_EXTENSIONS + ARRAY_EXTENSIONS


def list_videos(folder) -> tuple[list[Path], list[Path]]:
    """(videos, unsupported): the entries of `folder` that are videos, and the other files.

    Hidden entries (names starting with '.') are ignored. Both lists are in natural name order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError(folder, "not a folder")
    videos, unsupported = [], []
    for p in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
        if p.name.startswith("."):
            continue
        (videos if is_video(p) else unsupported).append(p)
    return videos, unsupported


def as_rgb_uint8(array: np.ndarray, path) -> np.ndarray:
    """Frames (..., H, W, C) as uint8 RGB: grey (C=1) repeated, alpha (C=4) dropped.

    uint16 is scaled down, floats in [0, 1] scaled up. Any channel count other than 1, 3
    or 4 is a `VideoReadError` naming `path`: a 2-channel array cannot be told apart from
    data that is not an image (grey+alpha files are converted by their mode before this).
    """
    array = np.asarray(array)
    if array.ndim < 3:
        raise VideoReadError(path, f"expected frames with a channel axis (..., H, W, C), got shape {array.shape}")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and 0.0 <= array.min() and array.max() <= 1.0:
            array = np.round(array * 255.0).astype(np.uint8)
        else:
            raise VideoReadError(
                path, f"unsupported pixel type {array.dtype} (expected uint8, uint16, or float in [0, 1])"
            )
    channels = array.shape[-1]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=-1))
    if channels in (3, 4):
        return np.ascontiguousarray(array[..., :3])
    raise VideoReadError(
        path,
        f"wrong channel count {channels} (frames of shape {array.shape[-3:]}); expected 1 (grey), 3 (RGB) or 4 (RGBA)",
    )


def _decode_image(path: Path) -> np.ndarray:
    """One image file as uint8 RGB (H, W, 3), through PIL so that its mode says what channels mean."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGB", "L"):
                arr = np.asarray(im)
            elif mode in ("RGBA", "RGBa", "RGBX"):
                arr = np.asarray(im.convert("RGBA"))[..., :3]
            elif mode in ("LA", "La"):
                arr = np.asarray(im.convert("LA"))[..., 0]
            elif mode.startswith("I;16"):  # 16-bit grey
                arr = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
            elif mode == "I":  # 32-bit grey: PIL's container for 16-bit PNGs; 8-bit data if it fits
                arr = np.asarray(im).astype(np.int64)
                arr = (np.clip(arr, 0, 65535) >> 8 if arr.max(initial=0) > 255 else np.clip(arr, 0, 255)).astype(
                    np.uint8
                )
            elif mode == "1":
                arr = np.asarray(im.convert("L"))
            else:  # P (palette), CMYK, YCbCr, LAB, HSV, F...: let PIL convert to RGB
                arr = np.asarray(im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB"))[..., :3]
    except FileNotFoundError:
        raise VideoReadError(path, "file not found") from None
    except UnidentifiedImageError:
        raise VideoReadError(path, "not a readable image (corrupt, empty or unknown format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise VideoReadError(path, f"corrupt image ({e})") from None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.size == 0:
        raise VideoReadError(path, "empty image")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 frames (T, H, W, 3) resized to hw = (H', W') with PIL's bilinear filter.

    PIL widens the filter when shrinking, so downscaling is anti-aliased (like the original's
    skimage `resize`). A no-op when the size already matches.
    """
    from PIL import Image

    if frames.shape[1:3] == tuple(hw):
        return frames
    out = np.empty((frames.shape[0], hw[0], hw[1], 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((hw[1], hw[0]), Image.BILINEAR))
    return out


def _read_frame_folder(path: Path, hw) -> np.ndarray:
    files = frame_files(path)
    if not files:
        raise VideoReadError(path, f"zero frames: the folder holds no {'/'.join(FRAME_EXTENSIONS)} images")
    frames = []
    for f in files:
        frame = _decode_image(f)
        if hw is not None:
            frame = resize_frames(frame[None], hw)[0]
        elif frames and frame.shape != frames[0].shape:
            raise VideoReadError(
                f,
                f"frame size {frame.shape[1]}x{frame.shape[0]} differs from the folder's first frame "
                f"({frames[0].shape[1]}x{frames[0].shape[0]}); give frame_shape to resize all frames",
            )
        frames.append(frame)
    return np.stack(frames)


def _read_video_file(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")
    try:
        frames = iio.imread(path, index=None)
    except Exception as e:  # imageio/ffmpeg raise many kinds (OSError, RuntimeError, IndexError...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "no details"
        raise VideoReadError(
            path, f"cannot decode video ({type(e).__name__}: {reason}); expected a video file with at least one frame"
        ) from None
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] in (3, 4):
        frames = frames[None]  # one colour frame, returned without a time axis
    elif frames.ndim == 3:
        frames = frames[..., None]  # (T, H, W) grey
    if frames.ndim != 4:
        raise VideoReadError(path, f"unexpected decoded shape {frames.shape}")
    if frames.shape[0] == 0 or frames.size == 0:
        raise VideoReadError(path, "zero frames")
    return as_rgb_uint8(frames, path)


def _read_stacked(path: Path, hw) -> np.ndarray:
    image = _decode_image(path)
    height, width = image.shape[:2]
    if hw is None:
        frame_h, frame_w = height, height
    else:
        frame_h, frame_w = hw
        if height != frame_h:
            raise VideoReadError(
                path, f"stacked image is {height} pixels high but frame_shape asks for frames {frame_h} high"
            )
    if width % frame_w:
        raise VideoReadError(
            path,
            f"stacked image width {width} is not a multiple of the frame width {frame_w}"
            + ("" if hw else " (frames taken as square, height x height; give frame_shape otherwise)"),
        )
    frames = image.reshape(height, width // frame_w, frame_w, 3).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(frames)


def _read_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:
        raise VideoReadError(path, f"cannot load array ({type(e).__name__}: {e})") from None
    if array.ndim == 3:  # (T, H, W) grey
        array = array[..., None]
    if array.ndim != 4:
        raise VideoReadError(path, f"expected an array (T, H, W[, C]), got shape {array.shape}")
    if array.shape[0] == 0:
        raise VideoReadError(path, "zero frames")
    return as_rgb_uint8(array, path)


def read_video(path, frame_shape=None) -> np.ndarray:
    """All frames of the video at `path` as uint8 RGB (T, H, W, 3).

    path: a frame folder, a video file, a stacked .png/.jpg or a .npy array (see module doc).
    frame_shape: None (keep the stored size), (H, W) or (H, W, 3): frames are resized to it;
    for a stacked image it gives the frame size the strip is cut into instead.
    Raises VideoReadError (a ValueError) naming the file and the problem.
    """
    path = Path(path)
    hw = frame_hw(frame_shape)
    if not path.exists():
        raise VideoReadError(path, "no such file or folder")
    if path.is_dir():
        return _read_frame_folder(path, hw)
    suffix = path.suffix.lower()
    if suffix in STACKED_EXTENSIONS:
        return _read_stacked(path, hw)
    if suffix in VIDEO_EXTENSIONS:
        frames = _read_video_file(path)
    elif suffix in ARRAY_EXTENSIONS:
        frames = _read_array(path)
    else:
        raise VideoReadError(
            path,
            f"unsupported file type {suffix or '(no extension)'!r}; expected a frame folder, "
            f"{', '.join(VIDEO_EXTENSIONS + STACKED_EXTENSIONS + ARRAY_EXTENSIONS)}",
        )
    return resize_frames(frames, hw) if hw is not None else frames


def read_frames(path, indices: Sequence[int] | Iterable[int], frame_shape=None) -> np.ndarray:
    """Selected frames of a video (T', H, W, 3); reads only those files for a frame folder."""
    path = Path(path)
    indices = [int(i) for i in indices]
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoReadError(path, "zero frames")
        hw = frame_hw(frame_shape)
        frames = [_decode_image(files[i]) for i in indices]
        if hw is not None:
            return resize_frames(np.stack(frames), hw)
        return np.stack(frames)
    return read_video(path, frame_shape)[indices]
