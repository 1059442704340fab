"""Reading the demo's inputs and writing videos, PNG strips and visualisations."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mraa_jax.data.readers import VideoReadError, read_video, resize_frames
from mraa_jax.errors import InputError
from mraa_jax.files import atomic_path

# Smaller images hold too little to animate; larger ones are only limited by PIL's
# decompression-bomb guard (about 179 megapixels).
MIN_SIDE = 16


VIDEO_SUFFIXES = (".mp4", ".gif", ".mov", ".avi", ".mkv", ".webm")


def crop_resize(frames: np.ndarray, hw) -> np.ndarray:
    """uint8 (T, H, W, 3) frames resized to hw = (H', W'), the aspect kept by cropping the centre first."""
    frames = np.asarray(frames)
    th, tw = int(hw[0]), int(hw[1])
    h, w = frames.shape[1:3]
    if w * th > h * tw:  # too wide: crop the sides
        new_w = max(1, round(h * tw / th))
        x0 = (w - new_w) // 2
        frames = frames[:, :, x0 : x0 + new_w]
    elif w * th < h * tw:  # too tall: crop top and bottom
        new_h = max(1, round(w * th / tw))
        y0 = (h - new_h) // 2
        frames = frames[:, y0 : y0 + new_h]
    return resize_frames(np.ascontiguousarray(frames), (th, tw))


def read_source_image(path) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3); grey images, alpha channels and non-images are refused."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"source image {path}: no such file")
    try:
        image = iio.imread(path)
    except Exception as e:  # imageio raises many kinds
        raise InputError(f"source image {path}: not a readable image ({type(e).__name__})") from None
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
        raise InputError(f"source image {path}: grey image (one channel); give an RGB image")
    if image.ndim != 3:
        raise InputError(f"source image {path}: expected one image (H, W, 3), got an array of shape {image.shape}")
    if image.shape[-1] == 4 or image.shape[-1] == 2:
        raise InputError(f"source image {path}: has an alpha channel; give an RGB image without transparency")
    if image.shape[-1] != 3:
        raise InputError(f"source image {path}: {image.shape[-1]} channels; give an RGB image")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"source image {path}: unsupported pixel type {image.dtype}")
    check_size(image.shape[:2], f"source image {path}")
    return image


def check_size(hw, what: str) -> None:
    """InputError naming `what` if an image of (H, W) pixels is too small to animate."""
    if min(hw) < MIN_SIDE:
        raise InputError(
            f"{what}: {hw[1]}x{hw[0]} pixels, too small to animate (need at least {MIN_SIDE} on each side)"
        )


def video_fps(path) -> float | None:
    """Frames per second of a video file from its metadata, or None (frame folders, arrays, unknown)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in VIDEO_SUFFIXES:
        return None
    try:
        import imageio.v3 as iio

        meta = iio.immeta(path)
    except Exception:
        return None
    fps = meta.get("fps")
    if fps is None and meta.get("duration"):  # gif: duration of a frame in ms
        fps = 1000.0 / float(meta["duration"])
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return None
    return fps if np.isfinite(fps) and fps > 0 else None


def read_driving_video(path) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of a video file, frame folder, stacked image or .npy (any size)."""
    path = Path(path)
    try:
        frames = read_video(path)
    except VideoReadError as e:
        raise InputError(f"driving video {e}") from None
    check_size(frames.shape[1:3], f"driving video {path}")
    return frames


def to_uint8(frames) -> np.ndarray:
    return (np.clip(np.asarray(frames, np.float32), 0, 1) * 255).round().astype(np.uint8)


def write_video(path, frames, fps: float) -> Path:
    """uint8 or [0, 1] float (T, H, W, 3) frames as an H.264 mp4 (a .gif too, by the suffix), atomically.

    frames: an array, or an iterable of (H, W, 3) frames, written to the mp4 as they come (a stream).
    """
    path = Path(path)
    with atomic_path(path) as temporary:
        _write_video(temporary, frames, fps)
    return path


def _write_video(path: Path, frames, fps: float) -> None:
    import imageio.v2 as imageio

    if hasattr(frames, "shape"):
        frames = np.asarray(frames)
    frames = (frame if frame.dtype == np.uint8 else to_uint8(frame) for frame in map(np.asarray, frames))
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, list(frames), duration=1000.0 / fps)
        return
    with warnings.catch_warnings():  # ffmpeg runs as a subprocess; JAX warns about any fork
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        writer = imageio.get_writer(
            path, fps=fps, codec="libx264", quality=8, macro_block_size=1, ffmpeg_log_level="error"
        )
        try:
            for frame in frames:
                # Odd sizes: libx264's yuv420p needs even sides; pad by one pixel (edge) rather than rescale.
                pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
                writer.append_data(np.pad(frame, pad, mode="edge"))
        finally:
            writer.close()


def parse_frame_size(text: str, what: str = "--driving_size") -> tuple[int, int]:
    """(W, H) of a size written WxH (640x480), or an InputError naming `what`."""
    width, _, height = str(text).lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise InputError(f"{what}: expected WIDTHxHEIGHT in pixels (e.g. 640x480), got {text!r}")
    check_size((int(height), int(width)), what)
    return int(width), int(height)


def read_raw_frames(stream, size, what: str = "standard input"):
    """uint8 (H, W, 3) frames, one by one, from a binary stream of raw rgb24 frames of size = (W, H)
    (what `ffmpeg ... -f rawvideo -pix_fmt rgb24 -` writes) until it ends; a short last frame is an InputError."""
    width, height = size
    frame_bytes = width * height * 3
    while True:
        data = bytearray()
        while len(data) < frame_bytes:
            part = stream.read(frame_bytes - len(data))
            if not part:
                break
            data += part
        if not data:
            return
        if len(data) < frame_bytes:
            raise InputError(
                f"{what}: the last frame has {len(data)} bytes, expected {frame_bytes} "
                f"({width}x{height} rgb24; is --driving_size the stream's size?)"
            )
        yield np.frombuffer(bytes(data), np.uint8).reshape(height, width, 3)


def write_png_strip(path, frames) -> Path:
    """(T, H, W, 3) frames side by side as one lossless PNG (T*W wide), as the original saves predictions; atomically."""
    import imageio.v3 as iio

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = to_uint8(frames)
    with atomic_path(path) as temporary:
        iio.imwrite(temporary, np.concatenate(list(frames), axis=1))
    return path


def visualization_frames(source, driving, outputs: dict, kp_size: int = 2) -> np.ndarray:
    """(T, H', W', 3) uint8 grids of the original's visualiser, one per frame (mraa_jax.visualize).

    Columns: source with centres, driving with centres, deformed source, prediction,
    occlusion map, driving and source heatmaps. `outputs` is what run_frames(..., visual=True) gives.
    """
    from mraa_jax.region_params import RegionParams
    from mraa_jax.visualize import visualize

    source = np.asarray(source, np.float32)
    driving = np.asarray(driving, np.float32)
    sp = outputs["source_params"]
    source_params = RegionParams(
        shift=np.asarray(sp.shift), heatmap=None if sp.heatmap is None else np.asarray(sp.heatmap)
    )
    frames = []
    for t in range(driving.shape[0]):
        dp = RegionParams(
            shift=outputs["driving_shift"][t : t + 1],
            heatmap=outputs["driving_heatmap"][t : t + 1] if "driving_heatmap" in outputs else None,
        )
        frames.append(
            visualize(
                source[None],
                driving[t : t + 1],
                outputs["prediction"][t : t + 1],
                source_params=source_params,
                driving_params=dp,
                deformed=outputs["deformed"][t : t + 1],
                occlusion_map=outputs["occlusion_map"][t : t + 1] if "occlusion_map" in outputs else None,
                kp_size=kp_size,
            )
        )
    return np.stack(frames)
