"""Evaluation: batched animation, best frame, reconstruction scores and files, launch_eval.py, the notebook.

All on the tiny synthetic config (32x32 frames, 5 regions) with random weights.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURE, REPO, tiny_videos

TINY_CONFIG = REPO / "tests" / "tiny_synthetic_config.py"
LAUNCH = [sys.executable, str(REPO / "launch_eval.py")]

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg subprocesses under JAX


@pytest.fixture(scope="module")
def model():
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_synthetic_config import get_config

    from mraa_jax.model import MRAA

    return MRAA.random(get_config(), seed=1)


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    from mraa_jax import model_dir as md

    return md.save_model_dir(tmp_path_factory.mktemp("model") / "tiny", model.config, model.variables)


@pytest.fixture(scope="module")
def dataset_dir(model, tmp_path_factory):
    from mraa_jax.evaluation import prepare_dataset

    return prepare_dataset(model.config, str(tmp_path_factory.mktemp("data"))).dataset_dir


@pytest.fixture(scope="module")
def clip():
    return tiny_videos(num_videos=2, num_frames=6, seed=3)


def _read(path):
    import imageio.v3 as iio

    return iio.imread(path), iio.immeta(path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["relative", "standard", "avd", "reconstruction"])
def test_batched_equals_frame_by_frame(model, clip, mode):
    from mraa_jax import evaluation

    source, driving = clip[1, 0], clip[0]
    if mode == "reconstruction":
        source = driving[0]
    batched = evaluation.run_frames(model, source, driving, mode=mode, chunk_size=4)["prediction"]  # 4 + padded 2
    reference = evaluation.animate_frame_by_frame(model, source, driving, mode=mode)
    assert batched.shape == driving.shape
    np.testing.assert_allclose(batched, reference, atol=1e-5, rtol=0)
    if mode == "relative":  # one frame per call, and the model's own chunked animate
        one = evaluation.animate(model, source, driving, mode=mode, chunk_size=1)
        np.testing.assert_allclose(one, reference, atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            np.asarray(model.animate(source, driving, mode=mode, chunk_size=3)), reference, atol=1e-5, rtol=0
        )


def test_find_best_frame_picks_the_source(model, clip):
    from mraa_jax import evaluation

    source = clip[1, 2]
    driving = np.concatenate([clip[0, :3], source[None], clip[0, 3:]])
    assert evaluation.find_best_frame(model, source, driving, chunk_size=4) == 3
    out = evaluation.animate_outputs(model, source, driving, "relative", chunk_size=4, find_best_frame=True)
    assert out["best_frame"] == 3
    # The original animates forward and backward from the best frame: the same as every frame with it as `initial`.
    reference = evaluation.animate_frame_by_frame(model, source, driving, "relative", initial_frame=driving[3])
    np.testing.assert_allclose(out["prediction"], reference, atol=1e-5, rtol=0)
    # The layout ignores where the figure is and how large its layout is.
    from mraa_jax.region_params import RegionParams

    p = model.regions(driving[:2])
    moved = RegionParams(shift=p.shift * 0.5 + 0.2, affine=p.affine * 0.5)
    np.testing.assert_allclose(evaluation.region_layout(moved), evaluation.region_layout(p), atol=1e-5)


def test_reconstruction_files_and_l1(model, dataset_dir, tmp_path):
    from mraa_jax import data, evaluation

    result = evaluation.reconstruct(model, data.test_videos(dataset_dir), tmp_path, chunk_size=4, fps=10)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["overall"] == result["overall"] and set(saved["overall"]) == {"l1", "psnr", "ssim"}
    videos = list(data.test_videos(dataset_dir))
    assert saved["num_videos"] == len(videos) == 2
    errors = []
    for item, record in zip(videos, saved["videos"]):
        video = item["video"]
        prediction = evaluation.animate_frame_by_frame(model, video[0], video, "reconstruction")
        error = np.abs(prediction - video).mean(axis=(1, 2, 3))
        errors.append(error)
        assert record["l1"] == pytest.approx(error.mean(), abs=1e-6)
        strip, _ = _read(tmp_path / "png" / f"{item['name']}.png")
        assert strip.shape == (32, 32 * len(video), 3)
        np.testing.assert_array_less(np.abs(strip / 255.0 - np.concatenate(list(prediction), axis=1)), 1 / 255 + 1e-5)
        vis, meta = _read(tmp_path / "vis" / f"{item['name']}.mp4")
        assert vis.shape[0] == len(video) and vis.shape[1] == 32 and vis.shape[2] == 32 * 7  # 7 columns with occlusion
        assert meta["fps"] == pytest.approx(10)
    assert saved["overall"]["l1"] == pytest.approx(np.concatenate(errors).mean(), abs=1e-6)
    assert 0 < saved["overall"]["ssim"] <= 1 and saved["overall"]["psnr"] > 0


def test_scores_match_direct_formulas():
    from mraa_jax.evaluation import frame_scores

    rng = np.random.default_rng(0)
    a, b = rng.random((2, 3, 24, 24, 3), np.float32)
    scores = frame_scores(a, b)
    np.testing.assert_allclose(scores["l1"], np.abs(a - b).mean(axis=(1, 2, 3)), rtol=1e-5)
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(scores["psnr"], -10 * np.log10(mse), rtol=1e-4)
    np.testing.assert_allclose(frame_scores(a, a)["ssim"], 1.0, atol=1e-5)


def test_crop_resize_keeps_aspect():
    from mraa_jax.evaluation import crop_resize

    frames = np.zeros((1, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 255  # the centre square is white, the sides black
    out = crop_resize(frames, (16, 16))
    assert out.shape == (1, 16, 16, 3) and out.min() == 255


def _write_demo_inputs(folder):
    import imageio.v2 as imageio
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    iio.imwrite(folder / "source.png", (rng.random((50, 40, 3)) * 255).astype(np.uint8))
    frames = [(rng.random((48, 64, 3)) * 255).astype(np.uint8) for _ in range(5)]
    writer = imageio.get_writer(folder / "driving.mp4", fps=12, codec="libx264", macro_block_size=1)
    for frame in frames:
        writer.append_data(frame)
    writer.close()


def _run(args, cwd):
    return subprocess.run(LAUNCH + args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_demo(model_dir, tmp_path):
    _write_demo_inputs(tmp_path)
    args = [
        "--mode",
        "demo",
        "--checkpoint",
        str(model_dir),
        "--source_image",
        "source.png",
        "--driving_video",
        "driving.mp4",
        "--result_video",
        "result.mp4",
        "--animation_mode",
        "relative",
        "--find_best_frame",
        "--chunk_size",
        "2",
        "--visualization_video",
        "vis.mp4",
        "--noprogress",
    ]
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    video, meta = _read(tmp_path / "result.mp4")
    assert video.shape == (5, 32, 32, 3) and meta["fps"] == pytest.approx(12)
    vis, _ = _read(tmp_path / "vis.mp4")
    assert vis.shape[0] == 5 and vis.shape[1] == 32


@pytest.mark.slow
def test_cli_reconstruction(model_dir, dataset_dir, tmp_path):
    data_dir = str(dataset_dir).split("/mraa_synthetic/")[0]  # the dataset the fixture built is reused
    args = [
        "--mode",
        "reconstruction",
        "--checkpoint",
        str(model_dir),
        "--config",
        str(TINY_CONFIG),
        "--data_dir",
        data_dir,
        "--out_dir",
        str(tmp_path),
        "--chunk_size",
        "4",
        "--skip_visualization",
        "--noprogress",
    ]
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((tmp_path / "reconstruction" / "metrics.json").read_text())
    assert saved["num_videos"] == 2 and saved["num_frames"] == 12
    assert len(list((tmp_path / "reconstruction" / "png").glob("*.png"))) == 2


def test_mismatched_checkpoint_and_config(model_dir, tmp_path):
    from mraa_jax.evaluation import InputError, load_model

    (tmp_path / "ten.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\nfrom tiny_synthetic_config import get_config as base\n"
        "def get_config():\n    c = base()\n    c.model_params.num_regions = 10\n    return c\n"
    )
    from mraa_jax.config import load_config

    with pytest.raises(InputError, match="checkpoint and config do not match.*region_predictor.*mis-shaped"):
        load_model(model_dir, load_config(tmp_path / "ten.py"))


@pytest.mark.slow
def test_notebook_executes(model_dir, tmp_path, monkeypatch):
    reason = "running the notebook needs the `test` extra (nbformat, nbclient, ipykernel)"
    nbformat = pytest.importorskip("nbformat", reason=reason)
    nbclient = pytest.importorskip("nbclient", reason=reason)
    pytest.importorskip("ipykernel", reason=reason)
    monkeypatch.setenv("MRAA_DEMO_MODEL", str(model_dir))
    monkeypatch.setenv("MRAA_DEMO_FRAMES", "4")
    monkeypatch.setenv("MRAA_DEMO_FIND_BEST", "1")
    monkeypatch.setenv("MRAA_DEMO_RESULT", str(tmp_path / "result.mp4"))
    notebook = nbformat.read(REPO / "colab" / "demo.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    video, _ = _read(tmp_path / "result.mp4")
    assert video.shape == (4, 32, 96, 3)
    assert any(o.get("output_type") == "display_data" for c in notebook.cells for o in c.get("outputs", []))


def test_original_checkpoint_with_config(tmp_path):
    pytest.importorskip("torch", reason="reading .pth needs the `convert` extra (torch)")
    from mraa_jax.config import load_config
    from mraa_jax.evaluation import InputError, load_model

    model = load_model(FIXTURE / "checkpoint.pth", FIXTURE / "config.yaml")
    assert model.config.model_params.num_regions == 5
    config = load_config(FIXTURE / "config.yaml")
    config.model_params.num_regions = 10
    with pytest.raises(InputError, match="checkpoint.pth"):
        load_model(FIXTURE / "checkpoint.pth", config)
    with pytest.raises(InputError, match="needs --config"):
        load_model(FIXTURE / "checkpoint.pth")


@pytest.mark.slow
def test_animate_pairs_from_csv(model, dataset_dir, tmp_path):
    from mraa_jax import data, evaluation

    names = [v.name for v in data.open_split(dataset_dir, "test").videos]
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"source,driving\n{names[0]},{names[1]}\n")
    pairs = data.animation_pairs(dataset_dir, csv=csv)
    records = evaluation.animate_pairs(
        model, pairs, tmp_path / "out", "relative", chunk_size=4, fps=5, find_best_frame=True
    )
    assert [(r["source"], r["driving"]) for r in records] == [(names[0], names[1])]
    vis, meta = _read(records[0]["video"])
    assert vis.shape == (6, 32, 32 * 7, 3) and records[0]["frames"] == 6 and meta["fps"] == pytest.approx(5)
    assert 0 <= records[0]["best_frame"] < 6
    saved = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert saved["mode"] == "relative" and len(saved["pairs"]) == 1
