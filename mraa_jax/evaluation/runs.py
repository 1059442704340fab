"""The three jobs of launch_eval.py as functions: reconstruction, animation of dataset pairs, demo."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import jax
import numpy as np

from mraa_jax.evaluation import inference, media, metrics
from mraa_jax.evaluation.media import InputError
from mraa_jax.files import write_text

DEFAULT_FPS = 25.0


# -- model and data -------------------------------------------------------------


def _shapes(tree) -> dict:
    from flax import traverse_util

    return {"/".join(map(str, k)): tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(tree).items()}


def check_variables(model, needed=("region_predictor", "bg_predictor", "generator", "avd_network")) -> None:
    """InputError unless the model's variables have the shapes its config implies."""
    from mraa_jax.model import config_frame_shape, init_variables

    expected = jax.eval_shape(
        lambda: init_variables(model.networks, jax.random.PRNGKey(0), config_frame_shape(model.config))
    )
    problems = []
    for name in needed:
        if name not in model.variables:
            problems.append(f"network {name} missing")
            continue
        have, want = _shapes(model.variables[name]), _shapes(expected[name])
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        shaped = sorted(k for k in set(want) & set(have) if want[k] != have[k])
        if missing:
            problems.append(f"{name}: {len(missing)} missing (e.g. {missing[0]})")
        if extra:
            problems.append(f"{name}: {len(extra)} unexpected (e.g. {extra[0]})")
        if shaped:
            k = shaped[0]
            problems.append(f"{name}: {len(shaped)} mis-shaped (e.g. {k}: checkpoint {have[k]}, config {want[k]})")
    if problems:
        raise InputError("checkpoint and config do not match: " + "; ".join(problems))


def load_model(checkpoint, config=None, needed=("region_predictor", "bg_predictor", "generator")):
    """`mraa_jax.load` with one-line errors, and the variables checked against the config."""
    import mraa_jax

    path = Path(checkpoint)
    if not path.exists():
        raise InputError(f"checkpoint {path}: no such file or directory")
    if path.is_file() and path.suffix in (".pth", ".pt", ".tar") and config is None:
        raise InputError(f"checkpoint {path}: an original .pth checkpoint needs --config")
    try:
        model = mraa_jax.load(path, config)
    except ImportError as e:
        raise InputError(
            f"checkpoint {path}: reading an original checkpoint needs PyTorch (pip install -e '.[convert]'): {e}"
        ) from None
    except (FileNotFoundError, KeyError, ValueError) as e:
        message = str(e).strip().splitlines()
        raise InputError(f"checkpoint {path}: {' '.join(m.strip() for m in message[:3])}") from None
    check_variables(model, needed)
    return model


def prepare_dataset(config, data_dir: str):
    """Build (or reuse) the dataset config.dataset_params names, as launch_train.py does."""
    from mraa_jax import data

    dp = config.dataset_params
    data_dir = str(Path(data_dir).expanduser())
    if dp.root_dir == "synthetic":
        return data.build_synthetic_dataset(data_dir, **dp.synthetic.to_dict())
    if dp.root_dir is None:
        raise InputError(
            "config dataset_params.root_dir is not set: name a video root in the original's layout, or 'synthetic'"
        )
    if not Path(dp.root_dir).exists():
        raise InputError(f"dataset root {dp.root_dir} (config dataset_params.root_dir): no such folder")
    return data.build_video_dataset(dp.root_dir, data_dir, frame_shape=dp.frame_shape)


def _stem(name: str) -> str:
    base = Path(name).name
    root, ext = os.path.splitext(base)
    return root if ext.lower() in media.VIDEO_SUFFIXES + (".png", ".jpg", ".jpeg", ".npy") else base


def _finite(x):
    return x if isinstance(x, (int, str)) or x is None or math.isfinite(x) else None


# -- reconstruction -------------------------------------------------------------


def reconstruct(
    model,
    videos,
    out_dir,
    chunk_size: int = 16,
    fps: float = DEFAULT_FPS,
    visualize: bool = True,
    progress: bool = False,
) -> dict:
    """Reconstruction, as the original's evaluation does it, of every video of `videos` (an iterable of {"video", "name"}).

    Source = frame 0, driving = every frame, background matrix from (source, driving).
    Writes out_dir/png/<name>.png (the predictions side by side, lossless),
    out_dir/vis/<name>.mp4 (the visualiser's grid per frame) and out_dir/metrics.json:
    per-video and overall L1 (the original's score: mean |prediction - driving| over all
    frames of all videos), PSNR and SSIM. Returns the metrics dict.
    """
    out_dir = Path(out_dir)
    per_frame: dict[str, list] = {"l1": [], "psnr": [], "ssim": []}
    per_video = []
    start = time.perf_counter()
    for item in videos:
        video = np.asarray(item["video"], np.float32)
        name = _stem(str(item["name"]))
        outputs = inference.run_frames(
            model, video[0], video, mode="reconstruction", chunk_size=chunk_size, visual=visualize, progress=progress
        )
        scores = metrics.frame_scores(outputs["prediction"], video)
        for k, v in scores.items():
            per_frame.setdefault(k, []).append(v)
        per_video.append(
            {
                "name": str(item["name"]),
                "frames": int(video.shape[0]),
                **{k: _finite(float(np.mean(v))) for k, v in scores.items()},
            }
        )
        media.write_png_strip(out_dir / "png" / f"{name}.png", outputs["prediction"])
        if visualize:
            media.write_video(
                out_dir / "vis" / f"{name}.mp4", media.visualization_frames(video[0], video, outputs), fps
            )
    if not per_video:
        raise InputError("no test videos to reconstruct")
    overall = {k: _finite(v) for k, v in metrics.summarize(per_frame).items()}
    result = {
        "overall": overall,
        "num_videos": len(per_video),
        "num_frames": int(sum(v["frames"] for v in per_video)),
        "videos": per_video,
        "notes": "overall scores are means over all frames of all videos (the original's L1); "
        "images in [0, 1]; PSNR and SSIM from dm-pix (SSIM: 11x11 Gaussian window, sigma 1.5); "
        "per-frame PSNR of identical images is infinite and written as null",
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text(out_dir / "metrics.json", json.dumps(result, indent=2))
    return result


# -- animation of dataset pairs -----------------------------------------------------


def animate_pairs(
    model,
    pairs,
    out_dir,
    mode: str,
    chunk_size: int = 16,
    fps: float = DEFAULT_FPS,
    find_best_frame: bool = False,
    progress: bool = False,
) -> list[dict]:
    """Animate the first frame of each pair's source video with its driving video (the original's animate.py).

    pairs: an iterable of {"source_video", "driving_video", "source_name", "driving_name"}.
    Writes out_dir/vis/<source>-<driving>.mp4 (visualisation) and out_dir/png/<source>-<driving>.png
    (the predictions side by side). Returns one record per pair.
    """
    out_dir = Path(out_dir)
    records = []
    for item in pairs:
        source = np.asarray(item["source_video"][0], np.float32)
        driving = np.asarray(item["driving_video"], np.float32)
        name = f"{_stem(str(item['source_name']))}-{_stem(str(item['driving_name']))}"
        outputs = inference.animate_outputs(
            model, source, driving, mode, chunk_size, find_best_frame, visual=True, progress=progress
        )
        vis = media.write_video(
            out_dir / "vis" / f"{name}.mp4", media.visualization_frames(source, driving, outputs), fps
        )
        png = media.write_png_strip(out_dir / "png" / f"{name}.png", outputs["prediction"])
        records.append(
            {
                "source": str(item["source_name"]),
                "driving": str(item["driving_name"]),
                "frames": int(driving.shape[0]),
                "video": str(vis),
                "png": str(png),
                **({"best_frame": outputs["best_frame"]} if "best_frame" in outputs else {}),
            }
        )
    write_text(out_dir / "pairs.json", json.dumps({"mode": mode, "pairs": records}, indent=2))
    return records


# -- demo --------------------------------------------------------------------------


def demo_frame_shape(model) -> tuple[int, int]:
    """(H, W) of the model's frames; an InputError unless it animates RGB images, as the demos do."""
    from mraa_jax.model import config_frame_shape

    h, w, channels = config_frame_shape(model.config)
    if channels != 3:
        raise InputError(f"the demo animates RGB images; this model has {channels} channels")
    return h, w


def demo_inputs(model, source_image, driving_video, fps: float | None = None, max_frames: int | None = None):
    """Read an image file and a video file for the model: (source (H, W, 3), driving (T, H, W, 3),
    fps), both float32 in [0, 1], centre-cropped to the config's aspect and resized to its frame
    size; fps is the video's, else `fps`, else 25. Videos over `max_frames` frames are refused,
    before they are decoded where their metadata gives their length."""
    h, w = demo_frame_shape(model)
    image = media.read_source_image(source_image)
    out_fps = media.video_fps(driving_video) or fps or DEFAULT_FPS
    if max_frames is not None:
        estimate = _frame_count_estimate(driving_video, out_fps)
        if estimate is not None and estimate > max_frames:
            raise InputError(f"driving video: about {estimate} frames; at most {max_frames} are animated")
    frames = media.read_driving_video(driving_video)
    if max_frames is not None and frames.shape[0] > max_frames:
        raise InputError(f"driving video: {frames.shape[0]} frames; at most {max_frames} are animated")
    source = media.crop_resize(image[None], (h, w))[0].astype(np.float32) / 255.0
    driving = media.crop_resize(frames, (h, w)).astype(np.float32) / 255.0
    return source, driving, out_fps


def _frame_count_estimate(path, fps: float) -> int | None:
    """Frames of a video file by its metadata (duration x fps), or None where it does not say."""
    try:
        import imageio.v3 as iio

        duration = float(iio.immeta(path).get("duration") or 0)
    except Exception:  # unreadable: read_driving_video says why
        return None
    return round(duration * fps) if np.isfinite(duration) and duration > 0 else None


def demo(
    model,
    source_image,
    driving_video,
    result_video,
    mode: str = "relative",
    chunk_size: int = 16,
    find_best_frame: bool = False,
    fps: float | None = None,
    visualization_video=None,
    progress: bool = False,
) -> dict:
    """Animate an image file with a video file; inputs of any size are centre-cropped to the
    config's aspect and resized to its frame size. Writes `result_video` at the driving
    video's fps (else `fps`, else 25). Returns {"frames", "fps", "size", "best_frame"?}.
    """
    source, driving, out_fps = demo_inputs(model, source_image, driving_video, fps)
    visual = visualization_video is not None
    outputs = inference.animate_outputs(
        model, source, driving, mode, chunk_size, find_best_frame, visual=visual, progress=progress
    )
    media.write_video(result_video, outputs["prediction"], out_fps)
    if visual:
        media.write_video(visualization_video, media.visualization_frames(source, driving, outputs), out_fps)
    info = {"frames": int(driving.shape[0]), "fps": out_fps, "size": list(source.shape[:2])}
    if "best_frame" in outputs:
        info["best_frame"] = outputs["best_frame"]
    return info


def demo_stream(model, source_image, frames, result, mode: str = "relative", fps: float = DEFAULT_FPS) -> dict:
    """The demo on a stream: uint8 (H, W, 3) driving frames of any size (an iterable, such as
    `media.read_raw_frames(sys.stdin.buffer, size)`), each centre-cropped and resized as `demo`
    does and animated as it arrives (`model.stream`). `result`: a video path (written at `fps`),
    or a binary stream that gets each animated frame at once as raw rgb24 bytes (the config's size).
    Returns {"frames", "fps", "size"}.
    """
    h, w = demo_frame_shape(model)
    source = media.crop_resize(media.read_source_image(source_image)[None], (h, w))[0]
    stream = model.stream(source, mode)

    def animated():
        for frame in frames:
            yield media.to_uint8(stream.push(media.crop_resize(frame[None], (h, w))[0]))
        if stream.frames == 0:
            raise InputError("driving stream: no frames")

    if isinstance(result, (str, Path)):
        media.write_video(result, animated(), fps)
    else:
        for frame in animated():
            result.write(frame.tobytes())
            result.flush()
    return {"frames": stream.frames, "fps": fps, "size": [h, w]}
