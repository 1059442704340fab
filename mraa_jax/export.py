"""Export a model for deployment: StableHLO (`jax.export`) or ONNX artifacts, weights inside.

    python -m mraa_jax.export --checkpoint converted/vox256 --out exported/vox256 --format stablehlo
    python -m mraa_jax.export --checkpoint vox.pth --config configs/vox256.py --out exported/vox256-onnx --format onnx

Writes a self-contained directory: one file per piece (`<piece>.stablehlo`, the bytes of
`jax.export.Exported.serialize()`, or `<piece>.onnx`), `manifest.json` (pieces, their inputs and
outputs with shapes and dtypes, format, opset, config name, modes, networks left untrained) and
`config.yaml`. Shapes are fixed: H, W, C are the config's frame shape, K its number of regions.

Pieces (float32 NHWC images in [0, 1]; region params as the library's `RegionParams` fields):

  encode(image (1, H, W, C))
      -> shift (1, K, 2), covar (1, K, 2, 2), affine (1, K, 2, 2)
      Region params of one image: run it on the source image and on the reference driving
      frame (the first one, or any frame that relative motion is measured from).
  animate(source (1, H, W, C), source_shift (1, K, 2), source_covar (1, K, 2, 2),
          source_affine (1, K, 2, 2), reference_shift (1, K, 2), reference_affine (1, K, 2, 2),
          driving (B, H, W, C), mode () int32)
      -> prediction (B, H, W, C)
      The source animated by driving frames; B = 1. mode: 0 standard (the driving frame's own
      regions), 1 relative (its motion since the reference frame, applied to the source's
      regions, scaled by sqrt(hull area of the source centres / that of the reference's)),
      2 avd (the AVD network's re-expression of the driving pose; see the manifest's
      `untrained`). The reference inputs are read in relative mode only.
  animate_batch{N} (with --batch N > 1): `animate` for N driving frames at a time.

`animate` is `MRAA.animate`'s per-chunk program (`mraa_jax.model.animation_chunk`, the source
re-encoded in each call) with the mode a runtime input and the movement scale computed
in-graph (`hull_area`, in float32) rather than by Qhull on the host. Exported programs take no
weights: they are constants inside each file. The StableHLO pieces run with jax alone:

    exported = jax.export.deserialize(open("animate.stablehlo", "rb").read())
    prediction = exported.call(source, *source_params, reference_shift, reference_affine, frame, np.int32(1))

and the ONNX ones with onnxruntime (inputs by the names above). jax2onnx, onnx and onnxruntime
(pip extra `export`) are imported only for --format onnx.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mraa_jax import animation
from mraa_jax.errors import InputError
from mraa_jax.model import MRAA, config_frame_shape
from mraa_jax.modules.conv import portable_convolutions
from mraa_jax.modules.generator import Generator
from mraa_jax.region_params import RegionParams

FORMATS = ("stablehlo", "onnx")
MODES = animation.MODES  # a mode's code is its index: standard 0, relative 1, avd 2
ONNX_OPSET = 23
MANIFEST = "manifest.json"
SUFFIXES = {"stablehlo": ".stablehlo", "onnx": ".onnx"}


def hull_area(points: jax.Array) -> jax.Array:
    """Area of the convex hull of (K, 2) points, in jit-able (and ONNX-convertible) ops.

    The directed pair i -> j is a counter-clockwise hull edge when no point lies to its right
    and none strictly inside the segment (collinear points on the hull then give its pieces,
    not the whole edge); the shoelace sum over those edges is twice the area. O(K^3), no
    loops; every product rounded, so that jitted, eager and ONNX runs agree. Degenerate sets
    (fewer than 3 points, all collinear) give 0, where Qhull (`animation.movement_scale`) raises;
    relative mode then gives NaN or inf.
    """
    p = points
    count = p.shape[0]
    d = p[None, :, :] - p[:, None, :]  # d[i, j] = p_j - p_i
    e, f = d[:, :, None, :], d[:, None, :, :]  # e[i, j] = p_j - p_i, f[i, k] = p_k - p_i
    cross = _rounded(e[..., 0] * f[..., 1]) - _rounded(e[..., 1] * f[..., 0])  # (i, j, k): p_k left (> 0) of i -> j
    dot = _rounded(e[..., 0] * f[..., 0]) + _rounded(e[..., 1] * f[..., 1])
    length2 = _rounded(e[..., 0] * e[..., 0]) + _rounded(e[..., 1] * e[..., 1])
    inside = (cross == 0) & (dot > 0) & (dot < length2)
    # k = i and k = j are the edge's own ends: allowed by index, not by a cross product of exactly 0.
    ends = np.eye(count, dtype=bool)[:, None, :] | np.eye(count, dtype=bool)[None, :, :]
    allowed = ends | (cross > 0) | ((cross == 0) & ~inside)
    edge = jnp.all(allowed, axis=-1) & (length2[..., 0] > 0)
    shoelace = _rounded(p[:, None, 0] * p[None, :, 1]) - _rounded(p[:, None, 1] * p[None, :, 0])  # p_i x p_j
    return 0.5 * jnp.sum(jnp.where(edge, shoelace, 0.0))


def _rounded(x: jax.Array) -> jax.Array:
    """`x`, rounded before it is used: the select between a product and the subtraction keeps XLA
    from fusing them into a multiply-add, whose unrounded product would make the result depend on
    compilation (jit or not, CPU or GPU); as `mraa_jax.svd._rounded`."""
    return jnp.where(x == x, x, jnp.asarray(jnp.nan, x.dtype))


def movement_scale(source_shift: jax.Array, reference_shift: jax.Array) -> jax.Array:
    """`animation.movement_scale` in-graph: sqrt(hull area of the source centres / the reference's)."""
    return jnp.sqrt(hull_area(source_shift)) / jnp.sqrt(hull_area(reference_shift))


def check_exportable(model: MRAA) -> None:
    """InputError unless the model's region predictor gives the covar and affine every piece passes."""
    mp = model.config.model_params
    if not mp.estimate_affine:
        raise InputError(
            "export: model_params.estimate_affine is false (keypoint-only regions); the exported pieces "
            "pass region covariances and affines, as every published config has them"
        )


def pieces(
    model: MRAA, batch: int = 1, weight_barrier: bool = True
) -> dict[str, tuple[Callable, list[tuple[str, jax.ShapeDtypeStruct]], list[str]]]:
    """{name: (function, [(input name, spec)], [output names])} of the exported pieces; the
    functions close over the model's variables (on the default device). weight_barrier: the
    weights behind `optimization_barrier` (StableHLO; jax2onnx drops that op's outputs)."""
    check_exportable(model)
    nets = model.networks
    variables = jax.device_put(model.variables)
    h, w, c = config_frame_shape(model.config)
    k = model.config.model_params.num_regions
    f32 = jnp.float32

    def spec(*shape, dtype=f32):
        return jax.ShapeDtypeStruct(shape, dtype)

    def weights(name):
        # The weights are constants of the exported programs; behind this barrier the compiler
        # cannot fold them into other constants (BatchNorm into convolutions, say), which would
        # round differently from the library, where they are arguments.
        return jax.lax.optimization_barrier(variables[name]) if weight_barrier else variables[name]

    def encode(image):
        params = nets.region_predictor.apply(weights("region_predictor"), image)
        return params.shift, params.covar, params.affine

    def animate(source, source_shift, source_covar, source_affine, reference_shift, reference_affine, driving, mode):
        source_params = RegionParams(shift=source_shift, covar=source_covar, affine=source_affine)
        reference = RegionParams(shift=reference_shift, affine=reference_affine)
        driving_params = nets.region_predictor.apply(weights("region_predictor"), driving).without_heatmap()
        frames = driving.shape[0]
        expand = lambda x: jnp.broadcast_to(x, (frames,) + x.shape[1:])  # noqa: E731
        sources = expand(source)
        source_params = jax.tree_util.tree_map(expand, source_params)
        scale = movement_scale(source_shift[0], reference_shift[0])
        relative = animation.relative_params(source_params, driving_params, reference, scale)
        avd = nets.avd_network.apply(weights("avd_network"), source_params, driving_params)
        chosen = jax.tree_util.tree_map(
            lambda standard, rel, a: jnp.where(mode == 0, standard, jnp.where(mode == 1, rel, a)),
            driving_params,
            relative,
            avd,
        )
        generator = weights("generator")
        levels = nets.generator.apply(generator, source, method=Generator.encode)
        motion = nets.generator.apply(generator, sources, chosen, source_params, None, method=Generator.motion)
        return nets.generator.apply(generator, sources, [expand(x) for x in levels], motion, method=Generator.decode)

    image_in = [("image", spec(1, h, w, c))]
    params_out = ["shift", "covar", "affine"]

    def animate_inputs(frames):
        return [
            ("source", spec(1, h, w, c)),
            ("source_shift", spec(1, k, 2)),
            ("source_covar", spec(1, k, 2, 2)),
            ("source_affine", spec(1, k, 2, 2)),
            ("reference_shift", spec(1, k, 2)),
            ("reference_affine", spec(1, k, 2, 2)),
            ("driving", spec(frames, h, w, c)),
            ("mode", spec(dtype=jnp.int32)),
        ]

    out = {"encode": (encode, image_in, params_out), "animate": (animate, animate_inputs(1), ["prediction"])}
    if batch > 1:
        out[f"animate_batch{batch}"] = (animate, animate_inputs(batch), ["prediction"])
    return out


def _describe(names, specs) -> list[dict]:
    return [
        {"name": n, "shape": list(s.shape), "dtype": str(np.dtype(s.dtype))} for n, s in zip(names, specs, strict=True)
    ]


def export_stablehlo(fn: Callable, specs, platforms=("cpu",)) -> tuple[bytes, list]:
    """(serialized `jax.export.Exported`, output specs) of `fn` on inputs `specs`."""
    exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)
    return bytes(exported.serialize()), list(jax.tree_util.tree_leaves(exported.out_avals))


def export_onnx(fn: Callable, names, specs, output_names, opset: int = ONNX_OPSET):
    """ONNX ModelProto of `fn` by jax2onnx, inputs and outputs named."""
    logging.getLogger("jax2onnx").setLevel(logging.ERROR)  # plugins for libraries we do not use may fail to import
    try:
        from jax2onnx import to_onnx
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs jax2onnx, onnx and onnxruntime: pip install 'mraa-jax[export]'") from error
    with warnings.catch_warnings(), portable_convolutions():
        warnings.simplefilter("ignore")
        return to_onnx(
            fn,
            list(specs),
            model_name=fn.__name__,
            opset=opset,
            input_names=list(names),
            output_names=list(output_names),
        )


def export_model(
    model: MRAA,
    out,
    fmt: str,
    batch: int = 1,
    config_name: str = "",
    overwrite: bool = False,
    opset: int = ONNX_OPSET,
    platforms=("cpu",),
) -> dict:
    """Write the pieces of `model` as `fmt` to the directory `out` (whole or not at all); returns the manifest."""
    from mraa_jax.config import save_config
    from mraa_jax.model_dir import _swap_in

    if fmt not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if batch < 1:
        raise InputError(f"--batch: expected a positive number of frames, got {batch}")
    if fmt == "onnx" and model.config.model_params.compute_dtype != "float32":
        # onnxruntime's CPU kernels have no bfloat16 convolution (Conv: NOT_IMPLEMENTED).
        raise InputError(
            f"ONNX export needs model_params.compute_dtype float32, got {model.config.model_params.compute_dtype!r}: "
            "export model.with_compute_dtype('float32'), or use --format stablehlo"
        )
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    h, w, c = config_frame_shape(model.config)
    manifest = {
        "format": fmt,
        "opset": opset if fmt == "onnx" else None,
        "config": config_name,
        "config_file": "config.yaml",
        "frame_shape": [h, w, c],
        "num_regions": model.config.model_params.num_regions,
        "modes": {mode: code for code, mode in enumerate(MODES)},
        "untrained": list(model.untrained),
        "source": model.source,
        "jax": jax.__version__,
        "pieces": {},
    }
    if fmt == "stablehlo":
        manifest["platforms"] = list(platforms)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, (fn, inputs, output_names) in pieces(model, batch, weight_barrier=fmt == "stablehlo").items():
            names, specs = zip(*inputs, strict=True)
            file = name + SUFFIXES[fmt]
            if fmt == "stablehlo":
                data, out_specs = export_stablehlo(fn, specs, platforms)
                (staging / file).write_bytes(data)
            else:
                proto = export_onnx(fn, names, specs, output_names, opset)
                (staging / file).write_bytes(proto.SerializeToString())
                out_specs = [
                    jax.ShapeDtypeStruct(tuple(d.dim_value for d in o.type.tensor_type.shape.dim), np.float32)
                    for o in proto.graph.output
                ]
            manifest["pieces"][name] = {
                "file": file,
                "inputs": _describe(names, specs),
                "outputs": _describe(output_names, out_specs),
            }
        save_config(model.config, staging / "config.yaml")
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mraa_jax.export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help="a converted model directory, or the original's .pth file (with --config)"
    )
    parser.add_argument(
        "--config", default=None, help="configs/<name>.py or the original's .yaml (required for a .pth file)"
    )
    parser.add_argument("--out", required=True, help="directory to write (must not exist unless --overwrite)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument(
        "--batch", type=int, default=1, help="also export animate_batch<N> for N driving frames per call (N > 1)"
    )
    parser.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    parser.add_argument(
        "--platforms", default="cpu", help="StableHLO: comma-separated jax platforms to lower for (cpu, cuda, tpu)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)

    import mraa_jax

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    try:
        model = mraa_jax.load(args.checkpoint, args.config)
        name = Path(args.config).stem if args.config else Path(args.checkpoint).name
        manifest = export_model(
            model, out, args.format, args.batch, name, args.overwrite, args.opset, args.platforms.split(",")
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"exported {args.checkpoint} -> {out} ({args.format}: {', '.join(manifest['pieces'])})")
    if manifest["untrained"]:
        print(f"note: not in the checkpoint, random: {', '.join(manifest['untrained'])} (avd mode is meaningless)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
