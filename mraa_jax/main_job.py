"""The main job: build the dataset, train both stages, evaluate, animate, plot, report.

    python launch_train.py --config configs/shapes.py --workdir runs/shapes --mode all

Writes into the workdir, besides what training writes (checkpoints/, log.txt,
tensorboard/, train-vis/, model/):
    heldout.jsonl                  held-out L1 / copy-source L1 during training (HeldOutTracker)
    loss_curve.png                 that ratio and the training losses against training minutes
    eval/metrics.json              reconstruction scores of every test video, with the copy-source L1
                                   (and, on the synthetic dataset, where the region centres sit: region_placement)
    animation/<source>-<driving>.mp4  a test figure animated by another test figure's clip
    summary.json                   where everything is, the scores and the wall times
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mraa_jax import data
from mraa_jax.training.heldout import HeldOutTracker, copy_source_l1, read_records

HELDOUT_VIDEOS = 8  # test videos the tracker reconstructs during training (the final evaluation uses all)
HELDOUT_RECORDS = 12  # about this many tracker records over the reconstruction stage


def _pipeline(summary, params, dataset_params, seed: int):
    return data.training_pairs(
        data.open_split(summary.dataset_dir, "train"),
        params.batch_size,
        seed=seed,
        num_repeats=params.num_repeats,
        id_sampling=dataset_params.id_sampling,
        augmentation=dataset_params.augmentation_params,
    )


def _test_videos(summary) -> list[dict]:
    return list(data.test_videos(data.open_split(summary.dataset_dir, "test")))


def _synthetic_test_clips(config, count: int) -> list:
    """The synthetic dataset's first `count` test clips, re-rendered with their part labels."""
    from mraa_jax.data import figures

    synthetic = config.dataset_params.synthetic  # build_synthetic_dataset's arguments
    return [figures.make_clip(synthetic.seed, "test", i, synthetic.frames, synthetic.size) for i in range(count)]


def plot_curves(records: list[dict], path) -> Path:
    """loss_curve.png: held-out L1 / copy-source L1 and the training losses against training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["training_seconds"] / 60 for r in records]
    fig, (ax_ratio, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    ax_ratio.plot(minutes, [r["ratio"] for r in records], "o-")
    ax_ratio.axhline(1.0, color="grey", ls="--", lw=1, label="copy source (no motion)")
    ax_ratio.set(xlabel="training minutes", ylabel="held-out L1 / copy-source L1", title="Held-out reconstruction")
    ax_ratio.legend()
    for name in sorted({k for r in records for k in r["train_losses"]}):
        points = [(m, r["train_losses"][name]) for m, r in zip(minutes, records) if name in r["train_losses"]]
        ax_loss.plot(*zip(*points), label=name)
    ax_loss.set(xlabel="training minutes", ylabel="mean since previous point", yscale="log", title="Training losses")
    ax_loss.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_main_job(
    config,
    workdir,
    data_dir: str,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    avd_max_steps: int | None = None,
) -> dict:
    """Everything in the module docstring; returns (and writes to summary.json) what was produced."""
    import mraa_jax
    from mraa_jax.evaluation import runs
    from mraa_jax.evaluation.region_placement import region_placement
    from mraa_jax.training.trainer import train_avd, train_reconstruction

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    times = {}

    summary = runs.prepare_dataset(config, data_dir)
    test = _test_videos(summary)
    if len(test) < 2:
        raise ValueError(
            f"{summary.dataset_dir}: the main job needs at least 2 test videos (one to animate, one to drive it), found {len(test)}"
        )
    times["dataset_s"] = time.perf_counter() - start

    tick = time.perf_counter()
    pipeline = _pipeline(summary, config.train_params, config.dataset_params, seed)
    total_steps = max_steps or config.train_params.num_epochs * pipeline.steps_per_epoch
    heldout = np.stack([v["video"] for v in test[:HELDOUT_VIDEOS]])
    tracker = HeldOutTracker(config, heldout, max(1, total_steps // HELDOUT_RECORDS), workdir / "heldout.jsonl")
    state = train_reconstruction(
        config, workdir, pipeline, steps_in_epoch=pipeline.steps_per_epoch, max_steps=max_steps, seed=seed, hook=tracker
    )
    tracker.record(state, int(state.step))
    times["reconstruction_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    avd_pipeline = _pipeline(summary, config.train_avd_params, config.dataset_params, seed)
    train_avd(
        config, workdir, avd_pipeline, steps_in_epoch=avd_pipeline.steps_per_epoch, max_steps=avd_max_steps, seed=seed
    )
    times["avd_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model = mraa_jax.load(workdir / "model")
    scores = runs.reconstruct(model, test, workdir / "eval", chunk_size=32)
    copy_l1 = copy_source_l1(np.stack([v["video"] for v in test]))
    scores.update(copy_source_l1=copy_l1, l1_ratio_to_copy_source=scores["overall"]["l1"] / copy_l1)
    if config.dataset_params.root_dir == "synthetic":
        scores["region_placement"] = region_placement(model, _synthetic_test_clips(config, len(test)))
    (workdir / "eval" / "metrics.json").write_text(json.dumps(scores, indent=2))
    times["evaluation_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    mode = config.animate_params.mode
    pair = runs.animate_pairs(
        model,
        [
            {
                "source_video": test[0]["video"],
                "driving_video": test[1]["video"],
                "source_name": test[0]["name"],
                "driving_name": test[1]["name"],
            }
        ],
        workdir / "animation",
        mode,
        chunk_size=32,
    )[0]
    times["animation_s"] = time.perf_counter() - tick

    curve = plot_curves(read_records(workdir / "heldout.jsonl"), workdir / "loss_curve.png")
    times["total_s"] = time.perf_counter() - start
    result = {
        "outputs": {
            "model": str(workdir / "model"),
            "checkpoints": str(workdir / "checkpoints"),
            "log": str(workdir / "log.txt"),
            "tensorboard": str(workdir / "tensorboard"),
            "train_vis": str(workdir / "train-vis"),
            "heldout_records": str(workdir / "heldout.jsonl"),
            "loss_curve": str(curve),
            "evaluation": str(workdir / "eval" / "metrics.json"),
            "animation": pair["video"],
        },
        "scores": {
            "test_videos": scores["num_videos"],
            "l1": scores["overall"]["l1"],
            "copy_source_l1": copy_l1,
            "l1_ratio_to_copy_source": scores["l1_ratio_to_copy_source"],
            "psnr": scores["overall"].get("psnr"),
            "ssim": scores["overall"].get("ssim"),
        },
        "region_placement": scores.get("region_placement"),
        "animation_mode": mode,
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    (workdir / "summary.json").write_text(json.dumps(result, indent=2))
    return result


def _placement_line(r: dict) -> str:
    def show(name, spec):
        return "n/a" if r[name] is None else format(r[name], spec)

    return (
        f"regions ({r['frames']} test frames): {show('centres_on_figure', '.0%')} of centres on the figures,"
        f" {show('centres_on_limbs', '.0%')} on limbs; {show('limb_coverage', '.0%')} of limbs hold a centre;"
        f" centre spread {show('centre_spread_px', '.1f')} px (figure {show('figure_spread_px', '.1f')} px)"
    )


def format_summary(result: dict) -> str:
    """The lines the main job ends with: where each output is, and the scores."""
    s, t = result["scores"], result["seconds"]
    lines = ["", "outputs:"]
    lines += [f"  {name:<16} {path}" for name, path in result["outputs"].items()]
    lines += [
        "scores (reconstruction of the held-out test videos):",
        f"  L1 {s['l1']:.4f}   copy-source L1 {s['copy_source_l1']:.4f}   ratio {s['l1_ratio_to_copy_source']:.3f}"
        f"   PSNR {s['psnr']:.2f}   SSIM {s['ssim']:.3f}   ({s['test_videos']} videos)",
    ]
    if result.get("region_placement"):
        lines.append(_placement_line(result["region_placement"]))
    lines += [
        "wall time: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items()),
    ]
    return "\n".join(lines)
