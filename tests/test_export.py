"""mraa_jax.export on the fixture checkpoint: the exported pieces compute what the library computes.

StableHLO: deserialized and run in a fresh process in which importing mraa_jax and flax fails,
bit for bit what the same files give in this process, and within the parity bound 1e-4 of the
library's outputs (MRAA.regions, MRAA.animate with chunks of the exported batch) and of the
original's animations. ONNX: run by onnxruntime, within 1e-4 of the library. All three modes,
on the fixture's clip.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import nhwc
from scipy.spatial import ConvexHull

from mraa_jax import export

BATCH = 3  # the clip's 6 frames in 2 calls of animate_batch3


@pytest.fixture(scope="module")
def frames(fixture_inputs):
    return nhwc(fixture_inputs["source"])[0], nhwc(fixture_inputs["clip"])


@pytest.fixture(scope="module")
def library(fixture_model, frames):
    """The library's outputs: region params of the source and of the first driving frame, and the
    animation in every mode frame by frame (chunk 1), and in relative mode in chunks of BATCH."""
    source, clip = frames
    out = {}
    for name, image in (("source", source[None]), ("reference", clip[:1])):
        params = fixture_model.regions(image)
        out.update({f"{name}_{f}": np.asarray(getattr(params, f)) for f in ("shift", "covar", "affine")})
    for mode in export.MODES:
        out[f"{mode}_1"] = np.asarray(fixture_model.animate(source, clip, mode=mode, chunk_size=1))
    # The batched piece is the same program on BATCH frames: one mode shows it.
    out[f"relative_{BATCH}"] = np.asarray(fixture_model.animate(source, clip, mode="relative", chunk_size=BATCH))
    return out


def _export(converted_dir, out, fmt) -> dict:
    code = export.main(["--checkpoint", str(converted_dir), "--out", str(out), "--format", fmt, "--batch", str(BATCH)])
    assert code == 0
    manifest = json.loads((out / export.MANIFEST).read_text())
    assert manifest["format"] == fmt and manifest["config"] == converted_dir.name
    assert set(manifest["pieces"]) == {"encode", "animate", f"animate_batch{BATCH}"}
    assert (out / "config.yaml").is_file()
    return manifest


# Run as a script in a fresh interpreter: mraa_jax and flax cannot be imported, only jax and
# numpy. `run` is also called in the test's own process, to compare the two runs.
_STANDALONE = r"""
import json
import sys
from pathlib import Path

import jax
import numpy as np


def run(folder, x):
    manifest = json.loads((folder / "manifest.json").read_text())
    pieces = {n: jax.export.deserialize((folder / p["file"]).read_bytes()) for n, p in manifest["pieces"].items()}
    out = {}
    for name, image in (("source", x["source"][None]), ("reference", x["clip"][:1])):
        for field, value in zip(("shift", "covar", "affine"), pieces["encode"].call(image)):
            out[f"{name}_{field}"] = np.asarray(value)
    params = [out[k] for k in ("source_shift", "source_covar", "source_affine", "reference_shift", "reference_affine")]
    for piece, frames in (("animate", 1), ("animate_batch3", 3)):  # test_export.BATCH
        for mode in manifest["modes"] if frames == 1 else ["relative"]:
            code = manifest["modes"][mode]
            chunks = [pieces[piece].call(x["source"][None], *params, x["clip"][t : t + frames], np.int32(code))
                      for t in range(0, len(x["clip"]), frames)]
            out[f"{mode}_{frames}"] = np.concatenate([np.asarray(c) for c in chunks])
    return out


if __name__ == "__main__":
    sys.modules["mraa_jax"] = None
    sys.modules["flax"] = None
    for name in ("mraa_jax", "flax"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} is importable")
    folder, inputs_file, outputs_file = map(Path, sys.argv[1:])
    np.savez(outputs_file, **run(folder, dict(np.load(inputs_file))))
    assert sys.modules["mraa_jax"] is None and sys.modules["flax"] is None
    print("ok")
"""


def _assert_close(ours: dict, library: dict, atol: float) -> None:
    assert set(ours) == set(library)
    for key, expected in library.items():
        assert ours[key].shape == expected.shape, key
        difference = float(np.max(np.abs(ours[key] - expected)))
        assert difference <= atol, f"{key}: max abs difference {difference:.3g} > {atol}"


def test_stablehlo_runs_without_mraa_jax(converted_dir, frames, library, fixture_outputs, tmp_path):
    folder = tmp_path / "exported"
    manifest = _export(converted_dir, folder, "stablehlo")
    assert manifest["pieces"]["animate"]["inputs"][-1] == {"name": "mode", "shape": [], "dtype": "int32"}
    source, clip = frames
    np.savez(tmp_path / "inputs.npz", source=source, clip=clip)
    script = tmp_path / "standalone.py"
    script.write_text(_STANDALONE)
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    standalone = dict(np.load(tmp_path / "outputs.npz"))
    in_process = runpy.run_path(str(script))["run"](folder, {"source": source, "clip": clip})
    _assert_close(standalone, in_process, atol=0.0)  # the same program, bit for bit
    # A program of its own (the mode a runtime input, the weights constants): its float32 rounding
    # differs from the library's by about as much as either's from the original (avd mode: 3.1e-5,
    # the library 4.6e-5 from the original), so both are held to the parity bound.
    _assert_close(standalone, library, atol=1e-4)
    for mode in export.MODES:
        original = nhwc(fixture_outputs[f"anim.{mode}.prediction"])
        _assert_close({mode: standalone[f"{mode}_1"]}, {mode: original}, atol=1e-4)


@pytest.mark.slow
def test_onnx_matches_library(converted_dir, frames, library, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the `export` extra")
    pytest.importorskip("jax2onnx", reason="ONNX export needs the `export` extra")
    folder = tmp_path / "exported"
    manifest = _export(converted_dir, folder, "onnx")
    assert manifest["opset"] == export.ONNX_OPSET
    sessions = {
        name: ort.InferenceSession(str(folder / p["file"]), providers=["CPUExecutionProvider"])
        for name, p in manifest["pieces"].items()
    }

    def run(piece, *args):
        names = [i["name"] for i in manifest["pieces"][piece]["inputs"]]
        return sessions[piece].run(None, dict(zip(names, args, strict=True)))

    source, clip = frames
    ours = {}
    for name, image in (("source", source[None]), ("reference", clip[:1])):
        ours.update({f"{name}_{f}": v for f, v in zip(("shift", "covar", "affine"), run("encode", image), strict=True)})
    params = [ours[k] for k in ("source_shift", "source_covar", "source_affine", "reference_shift", "reference_affine")]
    for piece, size in (("animate", 1), (f"animate_batch{BATCH}", BATCH)):
        for mode in export.MODES if size == 1 else ("relative",):
            code = np.array(export.MODES.index(mode), np.int32)
            chunks = [run(piece, source[None], *params, clip[t : t + size], code)[0] for t in range(0, len(clip), size)]
            ours[f"{mode}_{size}"] = np.concatenate(chunks)
    _assert_close(ours, library, atol=1e-4)


def test_hull_area_matches_qhull():
    rng = np.random.default_rng(0)
    area = jax.jit(export.hull_area)
    for count in (3, 5, 10, 20):
        for _ in range(20):
            points = rng.uniform(-1, 1, (count, 2)).astype(np.float32)
            expected = ConvexHull(points.astype(np.float64)).volume
            assert abs(float(area(points)) - expected) <= 1e-6 * max(1.0, expected)
    square = np.array(
        [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0], [0.5, 0.5], [1, 0.25]], np.float32
    )  # collinear points on edges
    assert float(export.hull_area(square)) == 1.0
    assert float(export.hull_area(np.array([[0, 0], [1, 1], [2, 2]], np.float32))) == 0.0


def test_cli_refuses_existing_out(converted_dir, tmp_path, capsys):
    assert export.main(["--checkpoint", str(converted_dir), "--out", str(tmp_path), "--format", "stablehlo"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (
        export.main(
            ["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "new"), "--format", "stablehlo"]
        )
        == 1
    )
    assert "no model at" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_onnx_refuses_bfloat16(fixture_model, tmp_path):
    """onnxruntime's CPU kernels have no bfloat16 convolution: the export says so up front."""
    from mraa_jax.errors import InputError

    with pytest.raises(InputError, match=r"ONNX export needs model_params\.compute_dtype float32, got 'bfloat16'"):
        export.export_model(fixture_model.with_compute_dtype("bfloat16"), tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


def test_onnx_graph_of_a_layer_the_library_runs_by_winograd():
    """ONNX cannot hold the CPU-only forms chosen per platform (`lax.platform_dependent`), so an
    ONNX graph is traced with XLA's convolution for them: a Winograd-sized layer converts and runs."""
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the `export` extra")
    pytest.importorskip("jax2onnx", reason="ONNX export needs the `export` extra")
    from mraa_jax.modules.conv import _xla_conv, conv2d, conv_method

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 64, 64, 256)).astype(np.float32)
    kernel = (rng.normal(size=(3, 3, 256, 256)) * 0.05).astype(np.float32)
    assert conv_method(kernel.shape, x.shape) == "winograd"
    spec = jax.ShapeDtypeStruct(x.shape, np.float32)
    proto = export.export_onnx(lambda x: conv2d(x, kernel, 1), ["x"], [spec], ["y"])
    (ours,) = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(ours, _xla_conv(x, kernel, 1), rtol=0, atol=1e-4)
