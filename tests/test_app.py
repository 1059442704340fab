"""The web demo (mraa_jax.app) through its HTTP API, as a script or a browser would use it.

The app runs in-process on a free port of 127.0.0.1 with the fixture checkpoint (64x64, with an
AVD network); gradio_client uploads tests/fixtures/data's source image and a short clip cut from its
driving video (not square, so the demo's centre crop is exercised) and gets the mp4s back.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from conftest import DRIVING_VIDEO, SOURCE_IMAGE

pytest.importorskip("gradio", reason="the web demo needs the `app` extra (gradio)")
pytest.importorskip("gradio_client", reason="the web demo's HTTP test needs the `app` extra (gradio_client)")

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg subprocesses under JAX

FRAMES, FPS = 6, 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(fixture_model, tmp_path_factory):
    from gradio_client import Client

    from mraa_jax.app import build_app

    demo = build_app(fixture_model, work_dir=tmp_path_factory.mktemp("app"))
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def driving_clip(tmp_path_factory):
    """The first frames of the fixture driving video, cropped to 384x288 (W x H), as an mp4."""
    from mraa_jax.evaluation import media

    frames = media.read_driving_video(DRIVING_VIDEO)[:FRAMES, 48:336]
    return media.write_video(tmp_path_factory.mktemp("inputs") / "driving.mp4", frames, FPS)


def test_animate_endpoint_equals_the_library(client, fixture_model, driving_clip):
    """/animate's result mp4 is model.animate of the same (decoded, cropped, resized) inputs, written
    by the same H.264 writer; the preview is source | driving | result, enlarged 4x."""
    from gradio_client import handle_file

    from mraa_jax.evaluation import media

    result, preview, details = client.predict(
        handle_file(str(SOURCE_IMAGE)), handle_file(str(driving_clip)), "relative", False, api_name="/animate"
    )
    assert details == f"{FRAMES} frames at {FPS:g} fps, 64x64, mode relative"
    got = media.read_driving_video(result)
    assert got.shape == (FRAMES, 64, 64, 3)
    assert media.video_fps(result) == FPS
    # The reference: the library on what the app was given (the uploaded mp4 decodes to the same frames).
    source = media.crop_resize(media.read_source_image(SOURCE_IMAGE)[None], (64, 64))[0] / np.float32(255)
    driving = media.crop_resize(media.read_driving_video(driving_clip), (64, 64)) / np.float32(255)
    expected = np.asarray(fixture_model.animate(source, driving, mode="relative"))
    # What H.264 (yuv420p, quality 8) does to these frames (about 0.006 here): the app's output may differ
    # from the float frames by that much, and from the reference through the same writer by a rounding
    # level (equal frames encode to equal bytes; here they are identical).
    reference = media.read_driving_video(media.write_video(driving_clip.parent / "reference.mp4", expected, FPS))
    codec_error = np.abs(reference / 255.0 - expected).mean()
    assert codec_error < 0.03
    assert np.abs(got / 255.0 - expected).mean() <= codec_error + 1 / 255
    assert np.abs(got.astype(int) - reference).mean() <= 1.0
    side_by_side = media.read_driving_video(preview)
    assert side_by_side.shape == (FRAMES, 256, 3 * 256, 3)
    result_panel = side_by_side[:, ::4, 2 * 256 :: 4].astype(int)  # one pixel of each 4x4 block
    assert np.abs(result_panel - reference).mean() < 0.05 * 255


def test_bad_inputs_are_clear_errors(client, driving_clip, tmp_path):
    """No traceback, the message of the library's InputError, without Gradio's upload folders."""
    import imageio.v3 as iio
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    grey = tmp_path / "grey.png"
    iio.imwrite(grey, np.full((64, 64), 128, np.uint8))
    with pytest.raises(AppError, match=r"^source image grey\.png: grey image \(one channel\); give an RGB image$"):
        client.predict(handle_file(str(grey)), handle_file(str(driving_clip)), "relative", False, api_name="/animate")
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    with pytest.raises(AppError, match=r"^driving video broken\.mp4: "):
        client.predict(handle_file(str(SOURCE_IMAGE)), handle_file(str(broken)), "standard", False, api_name="/animate")
    with pytest.raises(AppError, match="no source image"):
        client.predict(None, handle_file(str(driving_clip)), "relative", False, api_name="/animate")


def test_only_the_checkpoints_modes(fixture_model):
    """avd is offered only where the checkpoint has a trained AVD network."""
    from mraa_jax import MRAA
    from mraa_jax.app import supported_modes

    assert supported_modes(fixture_model) == ["standard", "relative", "avd"]
    first_stage = MRAA(fixture_model.config, fixture_model.variables, untrained=("avd_network",))
    assert supported_modes(first_stage) == ["standard", "relative"]


def test_import_mraa_jax_does_not_import_gradio():
    import subprocess
    import sys

    code = "import sys, mraa_jax, mraa_jax.evaluation; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
