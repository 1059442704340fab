"""The main job (`launch_train.py --mode all`) end to end on a tiny synthetic config: every output exists and reads."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from mraa_jax.training.checkpoints import Checkpoints
from mraa_jax.training.heldout import read_records

REPO = Path(__file__).resolve().parents[1]


def tfrecord_payloads(path: Path) -> list[bytes]:
    """The records of a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    blob, payloads, offset = path.read_bytes(), [], 0
    while offset < len(blob):
        (length,) = struct.unpack("<Q", blob[offset : offset + 8])
        payloads.append(blob[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
    assert offset == len(blob), f"{path}: truncated record"
    return payloads


@pytest.mark.slow
def test_main_job_writes_every_output(tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO / "launch_train.py"),
        "--config",
        str(REPO / "tests" / "tiny_synthetic_config.py"),
        "--workdir",
        str(run),
        "--data_dir",
        str(tmp_path / "data"),
        "--mode",
        "all",
        "--max_steps",
        "3",
        "--avd_max_steps",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((run / "summary.json").read_text())
    for name, path in summary["outputs"].items():
        assert Path(path).exists(), f"{name}: {path}"
        assert path in result.stdout, f"the job does not print where {name} is"
    assert f"ratio {summary['scores']['l1_ratio_to_copy_source']:.3f}" in result.stdout

    assert Checkpoints(run / "checkpoints" / "reconstruction").latest_step() == 3
    assert Checkpoints(run / "checkpoints" / "avd").latest_step() == 2
    log = (run / "log.txt").read_text().splitlines()
    assert log[0].startswith("00000) ") and "l1 - " in log[0]
    assert any(line.startswith("avd-") for line in log)
    payloads = [p for events in (run / "tensorboard").glob("events.out.tfevents.*") for p in tfrecord_payloads(events)]
    assert any(b"heldout/ratio_to_copy_source" in p for p in payloads) and any(b"loss/l1" in p for p in payloads)
    assert iio.imread(sorted((run / "train-vis").glob("*-rec.png"))[-1]).ndim == 3
    assert iio.imread(run / "loss_curve.png").shape[-1] in (3, 4)

    records = read_records(run / "heldout.jsonl")
    assert [r["step"] for r in records][0] == 0 and records[-1]["step"] == 3
    assert all(np.isfinite(r["ratio"]) and r["copy_l1"] > 0 for r in records)

    scores = json.loads((run / "eval" / "metrics.json").read_text())
    assert scores["num_videos"] == 2
    assert scores["l1_ratio_to_copy_source"] == scores["overall"]["l1"] / scores["copy_source_l1"]
    placement = summary["region_placement"]
    assert placement == scores["region_placement"] and placement["frames"] == 2 * 2  # every 4th of 6 frames, 2 videos
    assert 0 <= placement["centres_on_figure"] <= 1 and placement["figure_spread_px"] > 0
    assert f"centre spread {placement['centre_spread_px']:.1f} px" in result.stdout
    frames = iio.imread(summary["outputs"]["animation"])
    assert frames.ndim == 4 and frames.shape[0] == 6  # one visualisation frame per driving frame


def test_summary_lines_and_loss_curve_from_records(tmp_path):
    """The job's closing lines name every output and the scores; the curve plots every loss."""
    from mraa_jax.main_job import format_summary, plot_curves

    records = [
        {"training_seconds": 60.0 * i, "ratio": 1.0 / (i + 1), "train_losses": {"l1": 0.5 / (i + 1), "total": 1.0}}
        for i in range(3)
    ]
    curve = plot_curves(records, tmp_path / "loss_curve.png")
    assert iio.imread(curve).shape[-1] in (3, 4)
    scores = {"l1": 0.05, "copy_source_l1": 0.1, "l1_ratio_to_copy_source": 0.5, "psnr": 18.0, "ssim": 0.6}
    result = {
        "outputs": {"model": "runs/x/model", "loss_curve": str(curve)},
        "scores": {**scores, "test_videos": 50},
        "seconds": {"reconstruction_s": 421.0, "total_s": 480.0},
    }
    text = format_summary(result)
    assert "runs/x/model" in text and str(curve) in text
    assert "ratio 0.500" in text and "(50 videos)" in text and "total 480 s" in text
