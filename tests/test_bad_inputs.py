"""Bad input, one table: launch_eval.py's demo and reconstruction modes, mraa_jax.load and the
data builders, each given what users give them by mistake.

A CLI case must exit with status 1 and one line on stderr naming the file or field; a library
case must raise mraa_jax.InputError with a one-line message naming it. No case may leave a
result (or a partial one) behind. A few inputs that look bad are accepted and converted
(16-bit PNG, a one-frame video, a very large image); the table says so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE, REPO

import mraa_jax

TINY_CONFIG = REPO / "tests" / "tiny_synthetic_config.py"

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg subprocesses under JAX


# -- the inputs ---------------------------------------------------------------------


def _write_video(path: Path, frames) -> None:
    import imageio.v2 as imageio

    writer = imageio.get_writer(path, fps=10, codec="libx264", macro_block_size=1, ffmpeg_log_level="error")
    for frame in frames:
        writer.append_data(frame)
    writer.close()


def _write_png_16(path: Path, image: np.ndarray) -> None:
    """A 16-bit RGB PNG (PIL and imageio write only 8-bit RGB), from the format's chunks."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = image.shape
    rows = b"".join(b"\0" + image[y].astype(">u2").tobytes() for y in range(h))  # filter type 0 per row
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, truecolour
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder of good and bad inputs, named as the table names them."""
    import imageio.v3 as iio
    import imageio_ffmpeg
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_synthetic_config import get_config

    from mraa_jax import model_dir
    from mraa_jax.config import save_config
    from mraa_jax.model import MRAA

    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    rgb = lambda h, w: (rng.random((h, w, 3)) * 255).astype(np.uint8)  # noqa: E731
    iio.imwrite(folder / "source.png", rgb(50, 40))
    iio.imwrite(folder / "rgba.png", (rng.random((40, 40, 4)) * 255).astype(np.uint8))
    iio.imwrite(folder / "grey.png", rgb(40, 40)[..., 0])
    _write_png_16(folder / "deep.png", (rng.random((40, 40, 3)) * 65535).astype(np.uint16))
    iio.imwrite(folder / "dot.png", rgb(1, 1))
    gradient = np.broadcast_to(np.linspace(0, 255, 8000).astype(np.uint8)[None, :, None], (8000, 8000, 3))
    Image.fromarray(np.ascontiguousarray(gradient)).save(folder / "huge.png", compress_level=1)
    (folder / "empty.png").write_bytes(b"")
    _write_video(folder / "driving.mp4", [rgb(48, 64) for _ in range(5)])
    _write_video(folder / "one_frame.mp4", [rgb(48, 64)])
    data = (folder / "driving.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("this is not a video\n")
    (folder / "empty.mp4").write_bytes(b"")
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-i",
            str(folder / "driving.mp4"),
            "-frames:v",
            "0",
            "-c:v",
            "libx264",
            str(folder / "zero_frames.mp4"),
        ],
        check=True,
    )
    mixed = folder / "mixed"
    mixed.mkdir()
    iio.imwrite(mixed / "0.png", rgb(40, 40))
    iio.imwrite(mixed / "1.png", rgb(48, 40))
    (folder / "blocker").write_text("a file where a folder should be\n")
    # Checkpoints: a model directory, one missing its AVD network, bad files, configs.
    model = MRAA.random(get_config(), seed=1)
    model_dir.save_model_dir(folder / "model", model.config, model.variables)
    model_dir.save_model_dir(folder / "stage_one", model.config, model.variables, meta={"random_init": ["avd_network"]})
    (folder / "empty.pth").write_bytes(b"")
    (folder / "text.pth").write_text("not a checkpoint\n")
    (folder / "model.txt").write_text("not a model\n")
    ten = model.config.copy_and_resolve_references()
    ten.model_params.num_regions = 10
    save_config(ten, folder / "ten_regions.yaml")
    save_config(model.config, folder / "misspelt.yaml")
    text = (folder / "misspelt.yaml").read_text()
    (folder / "misspelt.yaml").write_text(text.replace("  num_regions:", "  num_region:", 1))
    damaged = folder / "damaged"
    model_dir.save_model_dir(damaged, model.config, model.variables)
    for f in (damaged / "variables").rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:
            f.write_bytes(f.read_bytes()[:100])
    return folder


# -- launch_eval.py, in this process (the same main() as the command line) --------------------


def run_cli(args: list[str], cwd: Path, capsys, stdin: bytes = b"") -> tuple[int, list[str]]:
    """(exit status, stderr lines) of launch_eval.py's main() with `args` and `stdin` on standard input."""
    import io

    from absl import flags

    import launch_eval

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["launch_eval.py", *args])
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            launch_eval.main(["launch_eval.py"])
            status = 0
        except SystemExit as exit:
            status = exit.code
    return status, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


DEMO = {
    "mode": "demo",
    "checkpoint": "model",
    "source_image": "source.png",
    "driving_video": "driving.mp4",
    "result_video": "out/result.mp4",
    "chunk_size": "4",
}


def demo(**changes) -> list[str]:
    """launch_eval.py's arguments for the demo on the good inputs, with some flags changed."""
    return [f"--{flag}={value}" for flag, value in dict(DEMO, **changes).items()] + ["--noprogress"]


# (case, arguments, the message's fragment); every one must exit 1, one line, no output file.
CLI_ERRORS = [
    ("missing source image", demo(source_image="missing.png"), "source image missing.png: no such file"),
    ("zero-byte source image", demo(source_image="empty.png"), "source image empty.png: not a readable image"),
    ("grey source image", demo(source_image="grey.png"), "source image grey.png: grey image"),
    ("RGBA source image", demo(source_image="rgba.png"), "source image rgba.png: has an alpha channel"),
    ("1x1 source image", demo(source_image="dot.png"), "source image dot.png: 1x1 pixels, too small"),
    ("missing driving video", demo(driving_video="missing.mp4"), "driving video missing.mp4: no such file"),
    ("zero-byte mp4", demo(driving_video="empty.mp4"), "empty.mp4: empty file (0 bytes)"),
    ("truncated mp4", demo(driving_video="truncated.mp4"), "truncated.mp4: cannot decode video"),
    ("text file named .mp4", demo(driving_video="text.mp4"), "text.mp4: cannot decode video"),
    ("video with 0 frames", demo(driving_video="zero_frames.mp4"), "zero_frames.mp4: cannot decode video"),
    (
        "frames folder of mixed sizes",
        demo(driving_video="mixed"),
        "1.png: frame size 40x48 differs from the folder's first frame",
    ),
    ("missing checkpoint", demo(checkpoint="nowhere"), "checkpoint nowhere: no such file"),
    ("zero-byte checkpoint", demo(checkpoint="empty.pth", config=str(TINY_CONFIG)), "empty.pth: empty file (0 bytes)"),
    (
        "text file named .pth",
        demo(checkpoint="text.pth", config=str(TINY_CONFIG)),
        "text.pth: not a readable PyTorch checkpoint",
    ),
    (
        "checkpoint that does not fit the config",
        demo(config="ten_regions.yaml"),
        "checkpoint and config do not match: region_predictor",
    ),
    (
        "YAML config with a misspelt key",
        demo(config="misspelt.yaml"),
        "misspelt.yaml: model_params.num_region: unknown field",
    ),
    ("missing config", demo(config="missing.py"), "config missing.py: no such file"),
    ("damaged model directory", demo(checkpoint="damaged"), "damaged/variables: not a readable checkpoint"),
    (
        "output folder that cannot be written",
        demo(result_video="blocker/result.mp4"),
        "output blocker/result.mp4: cannot write to blocker",
    ),
    (
        "avd mode without an AVD network",
        demo(checkpoint="stage_one", animation_mode="avd"),
        "stage_one: the checkpoint has no AVD network",
    ),
    (
        "stdin (-) without --driving_size",
        demo(driving_video="-"),
        "--driving_video -: raw rgb24 frames on standard input need --driving_size WxH",
    ),
    (
        "malformed --driving_size",
        demo(driving_video="-", driving_size="64by48"),
        "--driving_size: expected WIDTHxHEIGHT in pixels (e.g. 640x480), got '64by48'",
    ),
    (
        "short last frame on stdin",
        demo(driving_video="-", driving_size="64x48"),
        "standard input: the last frame has 100 bytes, expected 9216 (64x48 rgb24",
    ),
    ("nothing on stdin", demo(driving_video="-", driving_size="64x48"), "driving stream: no frames"),
    (
        "reconstruction: missing dataset root",
        ["--mode", "reconstruction", "--checkpoint", "model", "--config", "nowhere_root.py", "--out_dir", "out"],
        "dataset root nowhere (config dataset_params.root_dir): no such folder",
    ),
    (
        "reconstruction: output folder that cannot be written",
        ["--mode", "reconstruction", "--checkpoint", "model", "--out_dir", "blocker/eval"],
        "--out_dir: cannot write to blocker/eval",
    ),
]


# Standard input of the cases that read it (the others get an empty one).
STDIN = {"short last frame on stdin": bytes(100)}


@pytest.fixture(scope="module")
def nowhere_root_config(inputs):
    (inputs / "nowhere_root.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\nfrom tiny_synthetic_config import get_config as base\n"
        "def get_config():\n    c = base()\n    c.dataset_params.root_dir = 'nowhere'\n    return c\n"
    )


def _leftovers(folder: Path) -> list[str]:
    """Results and partial results under `folder` (the out/ folder and any .partial file)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if ".partial" in p.name or (p.is_file() and p.parent.name == "out")
    )


@pytest.mark.parametrize("case, args, message", CLI_ERRORS, ids=[c[0] for c in CLI_ERRORS])
def test_cli_refuses(case, args, message, inputs, nowhere_root_config, capsys):
    status, lines = run_cli(args, inputs, capsys, STDIN.get(case, b""))
    assert status == 1, (case, lines)
    assert len(lines) == 1 and lines[0].startswith("launch_eval.py: error: "), (case, lines)
    assert message in lines[0], (case, lines[0])
    assert _leftovers(inputs) == []


# (case, arguments, frames expected in the result): inputs that look bad but are converted.
CLI_ACCEPTED = [
    ("16-bit PNG source", demo(source_image="deep.png"), 5),
    ("8000x8000 source image", demo(source_image="huge.png"), 5),
    ("video with 1 frame", demo(driving_video="one_frame.mp4"), 1),
]


@pytest.mark.parametrize(
    "case, args, frames",
    [pytest.param(*c, id=c[0], marks=[pytest.mark.slow] if c[0].startswith("8000x8000") else []) for c in CLI_ACCEPTED],
)
def test_cli_accepts(case, args, frames, inputs, capsys):
    import imageio.v3 as iio

    result = inputs / "out" / "result.mp4"
    try:
        status, lines = run_cli(args, inputs, capsys)
        assert status == 0, (case, lines)
        assert iio.imread(result).shape == (frames, 32, 32, 3)
    finally:
        result.unlink(missing_ok=True)


def test_command_line_exit_status(inputs):
    """The real command: status 1 and one line, no traceback."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "launch_eval.py"), *demo(source_image="dot.png")],
        cwd=inputs,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "launch_eval.py: error: source image dot.png: 1x1 pixels, too small to animate (need at least 16 on each side)"
    ]


def test_large_image_is_resized_without_holding_copies(inputs):
    """An 8000x8000 source (192 MB as uint8) is read and resized with at most two copies' worth of memory."""
    code = (
        "import resource, sys\nfrom mraa_jax.evaluation import media\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"image = media.read_source_image({str(inputs / 'huge.png')!r})\n"
        "small = media.crop_resize(image[None], (256, 256))\n"
        "print(image.shape, small.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(8000, 8000, 3) (1, 256, 256, 3)" in proc.stdout
    grown_mib = int(proc.stdout.split()[-1])
    assert grown_mib < 2 * 8000 * 8000 * 3 / 2**20, proc.stdout


# -- mraa_jax.load --------------------------------------------------------------------------

LOAD_ERRORS = [
    ("missing path", "nowhere", None, "no model at nowhere"),
    ("folder that is not a model", "mixed", None, "mixed is not a model directory"),
    ("zero-byte .pth", "empty.pth", TINY_CONFIG, "empty.pth: empty file (0 bytes)"),
    ("text file named .pth", "text.pth", TINY_CONFIG, "text.pth: not a readable PyTorch checkpoint"),
    (".pth without its config", "empty.pth", None, "empty.pth: an original checkpoint needs its config"),
    ("unknown file type", "model.txt", None, "model.txt: expected a converted model directory"),
    (
        "YAML config with a misspelt key",
        "model",
        "misspelt.yaml",
        "misspelt.yaml: model_params.num_region: unknown field",
    ),
    ("damaged model directory", "damaged", None, "damaged/variables: not a readable checkpoint"),
]


@pytest.mark.parametrize("case, path, config, message", LOAD_ERRORS, ids=[c[0] for c in LOAD_ERRORS])
def test_load_refuses(case, path, config, message, inputs, monkeypatch):
    monkeypatch.chdir(inputs)
    with pytest.raises(mraa_jax.InputError) as error:
        mraa_jax.load(path, config)
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value), (case, str(error.value))


def test_load_reports_a_checkpoint_that_does_not_fit(inputs):
    """The one multi-line message: every mismatch listed under a first line naming the file."""
    pytest.importorskip("torch", reason="original checkpoints need the `convert` extra (torch)")
    with pytest.raises(mraa_jax.CheckpointError) as error:
        mraa_jax.load(FIXTURE / "checkpoint.pth", inputs / "ten_regions.yaml")
    first, *rest = str(error.value).splitlines()
    assert first.startswith(f"{FIXTURE / 'checkpoint.pth'} does not fit the config") and rest


# -- the data builders ------------------------------------------------------------------------

BUILD_ERRORS = [
    ("text file named .mp4", "text.mp4", "text.mp4: cannot decode video"),
    ("zero-byte mp4", "empty.mp4", "empty.mp4: empty file (0 bytes)"),
    ("truncated mp4", "truncated.mp4", "truncated.mp4: cannot decode video"),
    ("video with 0 frames", "zero_frames.mp4", "zero_frames.mp4: cannot decode video"),
    ("frames folder of mixed sizes", "mixed", "1.png: frame size 40x48 differs from the folder's first frame"),
]


def _root(tmp_path: Path, inputs: Path, bad: str) -> Path:
    """A dataset root with train/ and test/: one good video each, and `bad` in test/."""
    import shutil

    for split in ("train", "test"):
        (tmp_path / "root" / split).mkdir(parents=True)
        shutil.copy(inputs / "driving.mp4", tmp_path / "root" / split / "good.mp4")
    copy = shutil.copytree if (inputs / bad).is_dir() else shutil.copy
    copy(inputs / bad, tmp_path / "root" / "test" / bad)
    return tmp_path / "root"


@pytest.mark.parametrize("case, bad, message", BUILD_ERRORS, ids=[c[0] for c in BUILD_ERRORS])
def test_builder_refuses_or_skips(case, bad, message, inputs, tmp_path):
    from mraa_jax.data import build_video_dataset

    root = _root(tmp_path, inputs, bad)
    with pytest.raises(mraa_jax.InputError) as error:
        build_video_dataset(root, tmp_path / "tfds", on_error="stop", num_workers=1)
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value), (case, str(error.value))
    assert not list((tmp_path / "tfds").rglob("dataset_info.json")), "a dataset was written"
    summary = build_video_dataset(
        root, tmp_path / "tfds", on_error="skip", num_workers=1
    )  # the default: left out, listed
    assert [Path(p).name for p, _ in summary.skipped] in ([bad], ["1.png"]), summary


def test_builder_refuses_a_missing_root(tmp_path):
    from mraa_jax.data import build_video_dataset

    with pytest.raises(mraa_jax.InputError, match="nowhere: dataset root not found"):
        build_video_dataset(tmp_path / "nowhere", tmp_path / "tfds")


def test_builder_converts_grey_rgba_and_16_bit_frames(inputs, tmp_path):
    """The original's data rules: grey becomes RGB, alpha is dropped, 16 bits become 8."""
    import shutil

    from mraa_jax.data import build_video_dataset, open_split

    root = tmp_path / "root"
    for split in ("train", "test"):
        frames = root / split / "clip"
        frames.mkdir(parents=True)
        for i, name in enumerate(("grey.png", "rgba.png", "deep.png")):
            shutil.copy(inputs / name, frames / f"{i}.png")
    summary = build_video_dataset(root, tmp_path / "tfds", num_workers=1)
    video = open_split(summary.dataset_dir, "train").video(0)
    assert video.shape == (3, 40, 40, 3) and video.dtype == np.uint8 and not summary.skipped
