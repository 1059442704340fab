"""Streaming animation (mraa_jax.streaming): equal to `animate`, one compilation, and launch_eval.py's demo on a pipe.

On the fixture checkpoint (64x64, 5 regions, with an AVD network) and frames of tests/fixtures/data.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import DRIVING_VIDEO, REPO, nhwc

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg subprocesses under JAX

FRAMES, SIZE = 4, (96, 80)  # the raw stream: frames, (W, H) (not square: the demo crops it)


@pytest.fixture(scope="module")
def clip(fixture_inputs):
    return nhwc(fixture_inputs["source"])[0], nhwc(fixture_inputs["clip"])


def test_hull_area_is_qhulls():
    import jax
    from scipy.spatial import ConvexHull

    from mraa_jax.streaming import hull_area

    points = np.random.default_rng(0).uniform(-1, 1, (20, 10, 2)).astype(np.float32)
    np.testing.assert_allclose(jax.jit(jax.vmap(hull_area))(points), [ConvexHull(p).volume for p in points], rtol=1e-5)
    # A unit square with a point on an edge, a repeated corner and a point inside.
    square = np.array([[0, 0], [1, 0], [0.5, 0], [1, 1], [1, 1], [0, 1], [0.5, 0.5]], np.float32)
    assert float(hull_area(square)) == pytest.approx(1.0, abs=1e-6)
    assert float(hull_area(np.array([[0, 0], [1, 1], [2, 2]], np.float32))) == 0.0


# relative in the fast subset: it holds the reference-frame logic that avd shares.
@pytest.mark.parametrize(
    "mode", ["relative", pytest.param("standard", marks=pytest.mark.slow), pytest.param("avd", marks=pytest.mark.slow)]
)
def test_stream_equals_animate_and_compiles_once(fixture_model, clip, mode):
    import jax

    source, frames = clip
    # Chunks of one frame, as pushed: XLA:CPU rounds differently per batch size
    # (animate's chunks of 1 and 4 differ by 1.0e-5 in avd mode).
    expected = np.asarray(fixture_model.animate(source, frames, mode=mode, chunk_size=1))
    stream = fixture_model.stream(source, mode)
    first = stream.push(frames[0])
    compiled = fixture_model.jitted.stream_step._cache_size()
    events = []
    listener = lambda event, seconds, **kwargs: events.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        with jax.transfer_guard("disallow"):  # and no implicit transfer
            rest = [stream.push(frame) for frame in frames[1:]]
            again = fixture_model.stream(source, mode)  # a new stream on the same model reuses the program
            repeated = [again.push(frame) for frame in frames[:2]]
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    # Nothing traced or compiled after the first push.
    assert [e for e in events if e.startswith("/jax/core/compile/")] == []
    assert fixture_model.jitted.stream_step._cache_size() == compiled
    video = np.stack([first, *rest])
    assert video.dtype == np.float32 and video.shape == frames.shape
    np.testing.assert_allclose(video, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.stack(repeated), video[:2])
    # uint8 frames are scaled by 1/255, as the demo scales them
    as_bytes = (frames[:2] * 255).round().astype(np.uint8)
    from_bytes, from_floats = fixture_model.stream(source, mode), fixture_model.stream(source, mode)
    np.testing.assert_array_equal(
        [from_bytes.push(f) for f in as_bytes], [from_floats.push(f) for f in as_bytes.astype(np.float32) / 255.0]
    )


def test_stream_refuses_bad_frames(fixture_model, clip):
    from mraa_jax import InputError

    source, frames = clip
    stream = fixture_model.stream(source, "standard")
    with pytest.raises(InputError, match=r"frame: shape \(32, 32, 3\), expected the source image's \(64, 64, 3\)"):
        stream.push(frames[0, :32, :32])
    with pytest.raises(InputError, match="frame: expected uint8 or float pixels"):
        stream.push(frames[0].astype(np.int32))
    with pytest.raises(InputError, match="animation mode must be one of"):
        fixture_model.stream(source, "sideways")


# -- launch_eval.py --driving_video -: raw frames on standard input -----------------------------


def _ffmpeg_raw() -> list[str]:
    """ffmpeg writing the first FRAMES frames of the fixture driving video, scaled to SIZE, as raw rgb24 to stdout."""
    import imageio_ffmpeg

    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-loglevel",
        "error",
        "-i",
        str(DRIVING_VIDEO),
        "-frames:v",
        str(FRAMES),
        "-vf",
        f"scale={SIZE[0]}:{SIZE[1]}",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]


@pytest.fixture(scope="module")
def piped(clip, fixture_model, tmp_path_factory):
    """The raw stream, the source image as a PNG, and what the library makes of them (uint8 frames)."""
    import imageio.v3 as iio

    from mraa_jax.evaluation import crop_resize, read_raw_frames
    from mraa_jax.evaluation.media import to_uint8

    folder = tmp_path_factory.mktemp("pipe")
    source = to_uint8(clip[0])
    iio.imwrite(folder / "source.png", source)
    raw = subprocess.run(_ffmpeg_raw(), capture_output=True, check=True).stdout
    frames = crop_resize(np.stack(list(read_raw_frames(io.BytesIO(raw), SIZE))), (64, 64))
    expected = to_uint8(fixture_model.animate(source / 255.0, frames / 255.0, mode="relative", chunk_size=1))
    return {"folder": folder, "raw": raw, "expected": expected}


def _demo_args(converted_dir, folder, result) -> list[str]:
    return [
        "--mode",
        "demo",
        "--checkpoint",
        str(converted_dir),
        "--source_image",
        str(folder / "source.png"),
        "--driving_video",
        "-",
        "--driving_size",
        f"{SIZE[0]}x{SIZE[1]}",
        "--result_video",
        result,
    ]


def test_read_raw_frames_refuses_a_short_last_frame():
    from mraa_jax import InputError
    from mraa_jax.evaluation import read_raw_frames

    frames = read_raw_frames(io.BytesIO(bytes(2 * 16 * 20 * 3 + 7)), (16, 20))
    assert [f.shape for f in (next(frames), next(frames))] == [(20, 16, 3)] * 2
    with pytest.raises(InputError, match=r"standard input: the last frame has 7 bytes, expected 960 \(16x20 rgb24"):
        next(frames)


@pytest.mark.slow
def test_pipe_to_stdout(piped, converted_dir):
    """ffmpeg | launch_eval.py --driving_video - --result_video -: raw frames out, as the library animates them."""
    ffmpeg = subprocess.Popen(_ffmpeg_raw(), stdout=subprocess.PIPE)
    command = [sys.executable, str(REPO / "launch_eval.py"), *_demo_args(converted_dir, piped["folder"], "-")]
    demo = subprocess.run(command, stdin=ffmpeg.stdout, capture_output=True, timeout=300)
    ffmpeg.stdout.close()
    assert ffmpeg.wait() == 0 and demo.returncode == 0, demo.stderr.decode()[-2000:]
    assert f"wrote standard output: {FRAMES} frames, 64x64" in demo.stderr.decode()
    out = np.frombuffer(demo.stdout, np.uint8)
    assert out.size == FRAMES * 64 * 64 * 3
    difference = np.abs(out.reshape(FRAMES, 64, 64, 3).astype(int) - piped["expected"])
    assert difference.max() <= 1 and difference.mean() < 0.01  # rounding to uint8 of float32 results equal to ~1e-6


def test_pipe_to_result_video(piped, converted_dir, monkeypatch, capsys):
    """The same in this process (main(), stdin replaced), written to --result_video."""
    import imageio.v3 as iio
    from absl import flags

    import launch_eval

    result = piped["folder"] / "result.mp4"
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["launch_eval.py", *_demo_args(converted_dir, piped["folder"], str(result)), "--fps", "10"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped["raw"])))
    launch_eval.main(["launch_eval.py"])
    assert f"wrote {result}: {FRAMES} frames" in capsys.readouterr().out
    video = iio.imread(result)
    assert video.shape == (FRAMES, 64, 64, 3) and iio.immeta(result)["fps"] == 10
    assert np.abs(video.astype(int) - piped["expected"]).mean() < 4  # H.264's loss
