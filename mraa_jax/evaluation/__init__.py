"""Evaluation and inference: fast batched animation, reconstruction scores, videos and the demo.

    import mraa_jax
    from mraa_jax import evaluation

    model = mraa_jax.load("converted/vox256")
    video = evaluation.animate(model, source, driving, mode="relative", chunk_size=16, find_best_frame=True)
    scores = evaluation.reconstruct(model, data.test_videos(dataset_dir), "out/reconstruction")

Modules: inference (chunked animation/reconstruction, best frame), metrics (L1, PSNR, SSIM),
media (inputs of any size, raw frames from a pipe, mp4/PNG writers, visualisation grids), runs (the jobs of launch_eval.py).
"""

from mraa_jax.evaluation.inference import (
    RUN_MODES,
    animate,
    animate_frame_by_frame,
    animate_outputs,
    driving_regions,
    find_best_frame,
    region_layout,
    run_frames,
)
from mraa_jax.evaluation.media import (
    InputError,
    crop_resize,
    parse_frame_size,
    read_driving_video,
    read_raw_frames,
    read_source_image,
    video_fps,
    visualization_frames,
    write_png_strip,
    write_video,
)
from mraa_jax.evaluation.metrics import frame_scores
from mraa_jax.evaluation.runs import (
    animate_pairs,
    check_variables,
    demo,
    demo_stream,
    load_model,
    prepare_dataset,
    reconstruct,
)
from mraa_jax.files import check_writable

__all__ = [
    "RUN_MODES",
    "InputError",
    "animate",
    "animate_frame_by_frame",
    "animate_outputs",
    "animate_pairs",
    "check_variables",
    "check_writable",
    "crop_resize",
    "demo",
    "demo_stream",
    "driving_regions",
    "find_best_frame",
    "frame_scores",
    "load_model",
    "parse_frame_size",
    "prepare_dataset",
    "read_driving_video",
    "read_raw_frames",
    "read_source_image",
    "reconstruct",
    "region_layout",
    "run_frames",
    "video_fps",
    "visualization_frames",
    "write_png_strip",
    "write_video",
]
