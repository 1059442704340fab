"""Every convolution of the animation's forward pass, timed alone: where a frame's time goes.

    python benchmarks/animation_layers.py --config configs/vox256.py --size 256 --chunk 8 [--repeats 5]

Traces the compiled animation chunk (mode standard, `--chunk` driving frames, the source encoded
outside, as `model.animate` runs it), collects its convolutions (same shapes counted together),
and times each alone, jitted, median of --repeats calls after a warm-up: compiled with XLA's
default options (on CPU: YNNPACK) and with the library's (`process_tuning.CPU_COMPILER_OPTIONS`:
Eigen, as the library compiles animation). Thin 7x7 layers appear as `conv2d` runs them: by
kernel columns, a 7x1 convolution to 7x their features. Layers that `conv2d` runs by Winograd on
CPU (`conv_method` "winograd": the bottleneck, and in chunks the hourglasses' 16x16 layers) are also timed that
way (winograd_ms); library_ms is each layer as the library runs it. Prints a table (milliseconds
per chunk, all occurrences; GFLOP/s of the direct form's multiply-adds) with this machine's
matrix-product rate for comparison, and JSON.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json

import jax
import numpy as np
from _measure import cpu_description, median_seconds, table

from mraa_jax import process_tuning
from mraa_jax.process_tuning import tune_process


def convolutions(jaxpr) -> list:
    """The conv_general_dilated equations of a jaxpr, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += convolutions(inner)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import jax.numpy as jnp

    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA, animation_chunk
    from mraa_jax.modules.conv import conv_method
    from mraa_jax.modules.winograd import conv_by_winograd

    config = load_config(args.config)
    config.dataset_params.frame_shape = [args.size, args.size, 3]
    model = MRAA.random(config)
    rng = np.random.default_rng(0)
    source = jnp.asarray(rng.random((1, args.size, args.size, 3), np.float32))
    chunk = jnp.asarray(rng.random((args.chunk, args.size, args.size, 3), np.float32))
    params = model.regions(source).without_heatmap()
    levels = model.jitted.encode(model.variables["generator"], source)
    fn = functools.partial(animation_chunk, model.networks, mode="standard", visual=False)
    closed = jax.make_jaxpr(fn)(model.variables, source, levels, params, params, chunk, jnp.float32(1.0))

    layers = collections.OrderedDict()
    for eqn in convolutions(closed.jaxpr):
        lhs, rhs = (v.aval for v in eqn.invars)
        key = (tuple(lhs.shape), tuple(rhs.shape), str(eqn.params["padding"]), str(lhs.dtype))
        layers.setdefault(key, [eqn, 0])[1] += 1

    matmul = jax.jit(lambda a: a @ a)
    a = jnp.ones((2048, 2048), jnp.float32)
    rate = 2 * 2048**3 / median_seconds(matmul, (a,), 10) / 1e9
    rows = collections.OrderedDict()
    total = {"ynnpack_ms": 0.0, "eigen_ms": 0.0, "library_ms": 0.0, "gflop": 0.0}
    options = process_tuning.CPU_COMPILER_OPTIONS
    for (lhs_shape, rhs_shape, _, dtype), (eqn, count) in layers.items():
        out_shape = eqn.outvars[0].aval.shape
        kh, kw, cin, _ = rhs_shape if eqn.params["dimension_numbers"].rhs_spec == (3, 2, 0, 1) else (None,) * 4
        gflop = 2 * np.prod(out_shape) * np.prod(rhs_shape) / rhs_shape[-1] / 1e9 if kh else float("nan")
        x = jnp.asarray(rng.random(lhs_shape, np.float32), dtype)
        k = jnp.asarray(rng.random(rhs_shape, np.float32), dtype)
        apply = lambda x, k, p=eqn.params: jax.lax.conv_general_dilated_p.bind(x, k, **p)  # noqa: E731
        ynnpack = median_seconds(jax.jit(apply), (x, k), args.repeats) * count
        eigen = median_seconds(jax.jit(apply, compiler_options=options), (x, k), args.repeats) * count
        winograd = None
        if kh and conv_method(rhs_shape, lhs_shape, dtype) == "winograd":
            padding = eqn.params["padding"][0][0]
            by_winograd = jax.jit(lambda x, k, p=padding: conv_by_winograd(x, k, p), compiler_options=options)
            winograd = median_seconds(by_winograd, (x, k), args.repeats) * count
        library = eigen if winograd is None else winograd
        name = f"{'x'.join(map(str, lhs_shape[1:]))} * {kh}x{kw}x{cin}->{rhs_shape[-1]}"
        rows[name] = {
            "count": count,
            "gflop": round(gflop * count, 2),
            "ynnpack_ms": round(ynnpack * 1e3, 1),
            "eigen_ms": round(eigen * 1e3, 1),
            "winograd_ms": None if winograd is None else round(winograd * 1e3, 1),
            "library_ms": round(library * 1e3, 1),
            "ynnpack_gflop_s": round(gflop * count / ynnpack, 1),
            "eigen_gflop_s": round(gflop * count / eigen, 1),
            "library_gflop_s": round(gflop * count / library, 1),
        }
        total["ynnpack_ms"] += ynnpack * 1e3
        total["eigen_ms"] += eigen * 1e3
        total["library_ms"] += library * 1e3
        total["gflop"] += gflop * count
    rows["all convolutions"] = {k: round(v, 1) for k, v in total.items()}
    report = {
        "config": args.config,
        "size": args.size,
        "chunk": args.chunk,
        "matmul_gflop_per_s": round(rate, 1),
        "layers": rows,
        **cpu_description(),
        "jax": jax.__version__,
    }
    print(f"CPU: {report['cpu']}; matrix products {rate:.0f} GFLOP/s; ms per chunk of {args.chunk} frames")
    columns = ["count", "gflop", "ynnpack_ms", "eigen_ms", "winograd_ms", "library_ms"]
    print(table(rows, columns + ["ynnpack_gflop_s", "eigen_gflop_s", "library_gflop_s"]))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
