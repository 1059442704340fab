"""Evaluate and use a trained MRAA model: reconstruction scores, animation of test pairs, the demo.

    python launch_eval.py --mode reconstruction --checkpoint runs/vox256/model --out_dir eval/vox256
    python launch_eval.py --mode animate --checkpoint converted/vox256 --out_dir eval/vox256   # config's animate_params
    python launch_eval.py --mode demo --checkpoint vox256.pth --config configs/vox256.py \\
        --source_image face.png --driving_video talk.mp4 --result_video result.mp4 --animation_mode relative --find_best_frame
    python launch_eval.py --mode relative ...     # the original demo's spelling: --mode standard|relative|avd is the demo

--checkpoint: a model directory (converted original, or launch_train.py's <workdir>/model) or an
original .pth with --config. --config (configs/<name>.py or the original's .yaml) is optional
for a model directory (its stored config.yaml is used) and overrides it when given.

reconstruction: every test video of the config's dataset (built into --data_dir once, as
launch_train.py does): source = frame 0, driving = every frame, background matrix from
(source, driving). Writes <out_dir>/reconstruction/metrics.json (per-video and overall L1
-- the original's score, mean |prediction - driving| over all frames of all videos -- PSNR
and SSIM), png/<video>.png (predictions side by side, lossless) and vis/<video>.mp4
(visualisation: source and driving with region centres, deformed source, prediction,
occlusion map, driving and source heatmaps).
animate: pairs of test videos (--pairs_csv with `source` and `driving` columns, default the
config's dataset_params.pairs_list, else --num_pairs random pairs), the first frame of the
source video animated by the driving video in --animation_mode (default the config's
animate_params.mode); writes <out_dir>/animation/vis/<source>-<driving>.mp4 and png/.
demo: --source_image (RGB; grey images and images with alpha are refused) and
--driving_video of any size: both are CENTRE-CROPPED to the aspect of the config's frame size
and then resized to it (so nothing is stretched); --result_video is written at the driving
video's fps (--fps where the input has none, e.g. a frame folder).
demo on a pipe: --driving_video - reads raw rgb24 frames of --driving_size WxH from standard
input and animates each as it arrives (mraa_jax.streaming), writing --result_video at --fps, or
with --result_video - each animated frame to standard output, raw rgb24 at the config's size:
    ffmpeg -i talk.mp4 -f rawvideo -pix_fmt rgb24 - | python launch_eval.py --mode demo --checkpoint converted/vox256 \\
        --source_image face.png --driving_video - --driving_size 384x384 --result_video - \\
        | ffplay -f rawvideo -pixel_format rgb24 -video_size 256x256 -     # (a webcam: ffmpeg -f v4l2 -i /dev/video0 ...)

Driving frames go through the networks in jitted batches of --chunk_size frames, the source
encoded once. --compute_dtype bfloat16 runs the networks' convolutions in bfloat16 (less memory
on GPUs; on CPU float32 is faster; outputs stay float32). Expected errors (missing or unreadable files, bad images, a checkpoint that
does not fit the config, an output folder that cannot be written) print one line naming the
cause and exit with status 1, before the model is loaded where they can be found then. Results
are written under a temporary name and renamed when complete: a failed run leaves no partial file.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from absl import app, flags, logging

MODES = ["reconstruction", "animate", "demo", "standard", "relative", "avd"]

_CONFIG = flags.DEFINE_string(
    "config", None, "configs/<name>.py or the original's .yaml; needed with a .pth checkpoint"
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "a model directory, or an original .pth checkpoint (with --config)"
)
_MODE = flags.DEFINE_enum(
    "mode",
    "reconstruction",
    MODES,
    "reconstruction, animate or demo; standard|relative|avd: the demo in that animation mode",
)
_ANIMATION_MODE = flags.DEFINE_enum(
    "animation_mode",
    None,
    ["standard", "relative", "avd"],
    "animation mode of animate/demo (default: the config's animate_params.mode for animate, relative for demo)",
)
_OUT_DIR = flags.DEFINE_string("out_dir", "eval", "output folder of reconstruction and animate")
_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "where datasets are built (once) and read")
_CHUNK = flags.DEFINE_integer("chunk_size", 16, "driving frames per jitted batch")
_FIND_BEST = flags.DEFINE_bool(
    "find_best_frame",
    False,
    "animate/demo: start the relative motion from the driving frame whose region layout is closest to the source's",
)
_SOURCE = flags.DEFINE_string("source_image", None, "demo: the image to animate (any size; centre-cropped and resized)")
_DRIVING = flags.DEFINE_string(
    "driving_video",
    None,
    "demo: the driving video (mp4/gif/mov, frame folder, ...; any size); "
    "-: raw rgb24 frames of --driving_size on standard input",
)
_DRIVING_SIZE = flags.DEFINE_string(
    "driving_size", None, "demo with --driving_video -: the frames' size WxH, e.g. 640x480"
)
_RESULT = flags.DEFINE_string(
    "result_video",
    "result.mp4",
    "demo: where to write the animation; with --driving_video -, -: raw rgb24 frames to standard output",
)
_VIS = flags.DEFINE_string("visualization_video", None, "demo: also write the visualisation grid video here")
_FPS = flags.DEFINE_float("fps", 25.0, "fps of written videos where the input has none (dataset videos, frame folders)")
_PAIRS_CSV = flags.DEFINE_string("pairs_csv", None, "animate: CSV of (source, driving) video names")
_NUM_PAIRS = flags.DEFINE_integer(
    "num_pairs", None, "animate: random pairs (default the config's animate_params.num_pairs)"
)
_SEED = flags.DEFINE_integer("seed", 0, "animate: seed of the random pairs")
_NO_VIS = flags.DEFINE_bool(
    "skip_visualization", False, "reconstruction: scores and PNG strips only, no visualisation videos"
)
_PROGRESS = flags.DEFINE_bool("progress", True, "show a progress bar per video")
_DTYPE = flags.DEFINE_enum(
    "compute_dtype",
    None,
    ["float32", "bfloat16"],
    "dtype of the networks' convolutions (default: the config's model_params.compute_dtype); bfloat16 saves memory on GPUs (slower on CPU)",
)


def _load_config():
    from mraa_jax.config import load_config
    from mraa_jax.errors import InputError

    if _CONFIG.value is None:
        return None
    path = Path(_CONFIG.value)
    if not path.is_file():
        raise InputError(f"config {path}: no such file")
    return load_config(path)  # a ConfigError names the file and the field


def run() -> dict:
    from mraa_jax import data, evaluation
    from mraa_jax.evaluation import InputError

    mode = _MODE.value
    demo_mode = mode in ("demo", "standard", "relative", "avd")
    if _CHECKPOINT.value is None:
        raise InputError("--checkpoint is required")
    if _CHUNK.value < 1:
        raise InputError(f"--chunk_size must be at least 1, got {_CHUNK.value}")
    if demo_mode:
        for flag, value in (("--source_image", _SOURCE.value), ("--driving_video", _DRIVING.value)):
            if not value:
                raise InputError(f"the demo needs {flag}")
        animation_mode = mode if mode != "demo" else (_ANIMATION_MODE.value or "relative")
    piped = demo_mode and _DRIVING.value == "-"
    if piped:
        if _DRIVING_SIZE.value is None:
            raise InputError("--driving_video -: raw rgb24 frames on standard input need --driving_size WxH")
        driving_size = evaluation.parse_frame_size(_DRIVING_SIZE.value)
        if _FIND_BEST.value or _VIS.value:
            raise InputError(
                "--driving_video -: --find_best_frame and --visualization_video need the whole video, not a stream"
            )
    elif _DRIVING_SIZE.value is not None or (demo_mode and _RESULT.value == "-"):
        raise InputError("--driving_size and --result_video - go with --driving_video - (raw frames on standard input)")
    config = _load_config()
    # Check the inputs and outputs before the (slow) model load.
    if demo_mode:
        evaluation.read_source_image(_SOURCE.value)
        if not piped and not Path(_DRIVING.value).exists():
            raise InputError(f"driving video {_DRIVING.value}: no such file or folder")
        for output in filter(lambda o: o and o != "-", (_RESULT.value, _VIS.value)):
            evaluation.check_writable(Path(output).parent, f"output {output}")
    else:
        evaluation.check_writable(Path(_OUT_DIR.value), "--out_dir")
    needed = ("region_predictor", "bg_predictor", "generator")
    model = evaluation.load_model(_CHECKPOINT.value, config, needed=needed)
    if _DTYPE.value:
        model = model.with_compute_dtype(_DTYPE.value)
    config = model.config
    if not demo_mode and mode == "animate":
        animation_mode = _ANIMATION_MODE.value or config.animate_params.mode
    if (demo_mode or mode == "animate") and animation_mode == "avd":
        model.check_mode(animation_mode)
        evaluation.check_variables(model, ("avd_network",))
    progress = _PROGRESS.value
    if piped:
        to_stdout = _RESULT.value == "-"
        frames = evaluation.read_raw_frames(sys.stdin.buffer, driving_size)
        result = sys.stdout.buffer if to_stdout else _RESULT.value
        info = evaluation.demo_stream(model, _SOURCE.value, frames, result, animation_mode, _FPS.value)
        print(
            f"wrote {'standard output' if to_stdout else result}: {info['frames']} frames, {info['size'][1]}x{info['size'][0]}",
            file=sys.stderr if to_stdout else sys.stdout,
        )  # stdout carries the frames
        return info
    if demo_mode:
        info = evaluation.demo(
            model,
            _SOURCE.value,
            _DRIVING.value,
            _RESULT.value,
            animation_mode,
            _CHUNK.value,
            _FIND_BEST.value,
            fps=_FPS.value,
            visualization_video=_VIS.value,
            progress=progress,
        )
        print(
            f"wrote {_RESULT.value}: {info['frames']} frames at {info['fps']:g} fps, {info['size'][1]}x{info['size'][0]}"
            + (f", best frame {info['best_frame']}" if "best_frame" in info else "")
        )
        return info
    summary = evaluation.prepare_dataset(config, _DATA_DIR.value)
    out_dir = Path(_OUT_DIR.value)
    if mode == "reconstruction":
        videos = data.test_videos(summary.dataset_dir)
        result = evaluation.reconstruct(
            model,
            videos,
            out_dir / "reconstruction",
            _CHUNK.value,
            _FPS.value,
            visualize=not _NO_VIS.value,
            progress=progress,
        )
        print(
            json.dumps(
                {
                    "metrics": str(out_dir / "reconstruction" / "metrics.json"),
                    **result["overall"],
                    "videos": result["num_videos"],
                    "frames": result["num_frames"],
                }
            )
        )
        return result
    csv = _PAIRS_CSV.value or config.dataset_params.pairs_list
    if csv is not None and not Path(csv).is_file():
        raise InputError(f"pairs CSV {csv}: no such file")
    num_pairs = _NUM_PAIRS.value if _NUM_PAIRS.value is not None else config.animate_params.num_pairs
    pairs = data.animation_pairs(summary.dataset_dir, csv=csv, num_pairs=num_pairs, seed=_SEED.value)
    records = evaluation.animate_pairs(
        model,
        pairs,
        out_dir / "animation",
        animation_mode,
        _CHUNK.value,
        _FPS.value,
        _FIND_BEST.value,
        progress=progress,
    )
    print(f"wrote {len(records)} animations ({animation_mode}) to {out_dir / 'animation'}")
    return {"pairs": records}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)  # ffmpeg subprocesses under JAX
    from mraa_jax.errors import InputError, first_line

    try:
        run()
    except (InputError, OSError) as e:  # expected: one line, no traceback
        print(f"launch_eval.py: error: {first_line(e)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from mraa_jax.process_tuning import tune_process

    tune_process(restart_with_huge_pages=True)  # mraa_jax/process_tuning.py: less memory, fewer page faults
    app.run(main)
