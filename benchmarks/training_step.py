"""Seconds per training step of the reconstruction stage (forward + backward + Adam), random weights.

    python benchmarks/training_step.py --config configs/vox256.py --size 256 --batch 2 --out step.json
    python benchmarks/training_step.py --config configs/shapes.py --size 64 --batch 8 --dtype bfloat16
    python benchmarks/training_step.py --config configs/shapes.py --size 64 --batch 8 --variants loop

The step is `mraa_jax.training.steps.build_reconstruction_step`, built as the trainer builds it
(jit of shard_map over all devices, the state donated), fed the same random batch every step (no
data loading). Two losses, each variant in a FRESH SUBPROCESS (its own compilation and peak memory):
  l1          equivariance losses + L1: perceptual weights 0, train_params.loss_weights.l1 = 1
  perceptual  equivariance losses + the config's perceptual pyramid, no L1 (train_params.scales; weights
              10 per layer, the published configs', where the config's are all 0). The
              VGG-19 parameters are RANDOMLY INITIALISED (no weights can be downloaded here): the
              cost is that of the real loss, the loss values are not.
Per variant: compile_s (jit lower + compile of the step, timed on its own), then --warmup untimed
steps and --repeats timed steps: the MEDIAN step time is reported (step_s; examples_per_s = batch /
median), with every time, the losses of the first step, and the median count of minor page faults
in a timed step (page_faults_per_step). Memory: peak_rss_mib, the subprocess's
peak resident set (model init and compilation included; ru_maxrss); on GPU device_peak_mib
(memory_stats()'s peak_bytes_in_use, process-wide: what compilation allocated counts too); step_temp_mib and
step_peak_mib, XLA's account of the compiled step (its temporaries; its peak with arguments and
outputs). `donation_warnings` lists any "donated buffers were not usable" warning.
--dtype sets model_params.compute_dtype (bfloat16: convs in bfloat16, VGG included). Prints a
table and JSON (written to --out too).
Like the launch scripts, the measured processes start with XLA:CPU's memory-minimising scheduler
and glibc's huge-page tunable (mraa_jax.process_tuning.tune_process; glibc_hugetlb says whether
the tunable was on; MRAA_JAX_HUGE_PAGES=0 turns it off, and
XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true keeps XLA's default scheduler).

The `loop` variant (not run by default) measures the trainer's whole loop against the bare step, in
one subprocess, on the l1 loss: steps per second of
  bare              the compiled step dispatched back to back on a batch already on the devices
  loop              `trainer.run_stage` (the loop `train_reconstruction` runs: batch put on the
                    devices, logs, TensorBoard, progress bar, NaN guard) fed one host batch over and
                    over, fetching the losses every --log_every steps
  fetch_every_step  the same loop fetching them every step (log_every_steps=1: the host waits for
                    each step, as the loop did before fetching only at log points)
each over the steps from --log_every to --loop_steps (both log points, where the loop waits for the
device: the first checkpoint, orbax's at step 1, falls before them), in --repeats interleaved
rounds; the median of each is reported, and each loop's overhead over the bare step in percent (the
median over rounds of its time over the bare step's in the same round, which shared its moment's load).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
import warnings

from _measure import cpu_description, emit, peak_memory, run_isolated, table

from mraa_jax.process_tuning import tune_process

STEP_VARIANTS = ("l1", "perceptual")
VARIANTS = (*STEP_VARIANTS, "loop")
LOOP_COLUMNS = [
    "bare_steps_per_s",
    "loop_steps_per_s",
    "fetch_every_step_steps_per_s",
    "loop_overhead_pct",
    "fetch_every_step_overhead_pct",
]


def build_step(config_path: str, size: int, batch: int, dtype: str, variant: str):
    """The reconstruction step as the trainer builds it, for `variant`'s loss, and its inputs
    (state, vgg, source, driving: random weights and frames). Also returns the train params."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mraa_jax.config import load_config
    from mraa_jax.losses import VGG19Features
    from mraa_jax.model import build_networks, config_frame_shape, init_variables
    from mraa_jax.training import steps

    config = load_config(config_path)
    config.dataset_params.frame_shape = [size, size, config.model_params.num_channels]
    config.model_params.compute_dtype = dtype
    tp = config.train_params
    if variant == "l1":
        tp.loss_weights.perceptual = [0] * len(tp.loss_weights.perceptual)
        tp.loss_weights.l1 = 1.0
    else:
        tp.loss_weights.l1 = 0.0
        if not any(tp.loss_weights.perceptual):  # e.g. configs/shapes.py: the published configs' weights
            tp.loss_weights.perceptual = [10.0] * 5
    sync_bn = bool(tp.get("use_sync_bn", False))
    mesh = steps.make_mesh()
    networks = build_networks(config.model_params, bn_axis_name=steps.AXIS if sync_bn else None)
    optimizer = steps.adam(tp.lr)
    variables = init_variables(networks, jax.random.PRNGKey(0), config_frame_shape(config))
    state = steps.replicate(mesh, steps.init_train_state(variables, optimizer, jax.random.PRNGKey(1)))
    vgg = {}
    if variant == "perceptual":  # random VGG-19: its shapes do not depend on the image size
        vgg = jax.jit(VGG19Features().init)(jax.random.PRNGKey(2), jnp.zeros((1, 32, 32, 3)))["params"]
    vgg = steps.replicate(mesh, vgg)
    rng = np.random.default_rng(0)
    shape = (batch, size, size, config.model_params.num_channels)
    source, driving = steps.shard_batch(mesh, rng.random(shape, np.float32), rng.random(shape, np.float32))
    step = steps.build_reconstruction_step(networks, optimizer, tp.to_dict(), mesh, sync_bn)
    return step, (state, vgg, source, driving), tp


def measure(args) -> dict:
    """One variant in this process: compile time, step times, peak memory."""
    import jax

    step, (state, vgg, source, driving), tp = build_step(args.config, args.size, args.batch, args.dtype, args.variant)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        compiled = step.lower(state, vgg, source, driving).compile()
        compile_s = time.perf_counter() - start
        times, faults, first_losses = [], [], None
        for i in range(args.warmup + args.repeats):
            start, faults_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            state, metrics = compiled(state, vgg, source, driving)
            jax.block_until_ready((state, metrics))
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
            first_losses = first_losses or {k: round(float(v), 5) for k, v in metrics.items()}
    median = statistics.median(times)
    memory = compiled.memory_analysis()
    return {
        "compile_s": round(compile_s, 2),
        "step_s": round(median, 4),
        "examples_per_s": round(args.batch / median, 2),
        **peak_memory(),
        # XLA's own account of the step program: its temporaries, and its peak (arguments, outputs, temporaries).
        "step_temp_mib": round(memory.temp_size_in_bytes / 2**20, 1),
        "step_peak_mib": round(memory.peak_memory_in_bytes / 2**20, 1),
        "times_s": [round(t, 4) for t in times],
        "page_faults_per_step": round(statistics.median(faults)),  # minor faults: memory the kernel maps in
        "first_step_losses": first_losses,
        "loss_weights": tp.loss_weights.to_dict(),
        "donation_warnings": sorted({str(w.message)[:200] for w in caught if "donat" in str(w.message).lower()}),
        "device": str(jax.devices()[0]),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
    }


class RepeatedBatch:
    """One host batch over and over, with the position the trainer's loop saves and restores."""

    def __init__(self, source, driving):
        self.batch = {"source": source, "driving": driving}
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        self.position += 1
        return self.batch

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])


def bare_seconds(step, state, inputs: tuple, count: int):
    """(seconds, state) of `count` steps dispatched back to back, awaited once at the end."""
    import jax

    start = time.perf_counter()
    for _ in range(count):
        state, metrics = step(state, *inputs)
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - start, state


def loop_seconds(step, state, vgg, batch: tuple, total_steps: int, log_every: int, first_timed: int):
    """(seconds, state) of the trainer's loop from step `first_timed` to `total_steps` (counted
    from 0), logging every `log_every` steps into a temporary workdir; both ends are log points,
    where the loop waits for the device."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from mraa_jax.training import steps
    from mraa_jax.training.checkpoints import Checkpoints
    from mraa_jax.training.trainer import run_stage

    times = {}

    def hook(state, step, metrics):
        if step in (first_timed, total_steps):
            times[step] = time.perf_counter()
        return {}

    mesh = steps.make_mesh()
    state = state.replace(step=steps.replicate(mesh, np.int32(0)))
    with tempfile.TemporaryDirectory() as workdir:
        checkpoints = Checkpoints(
            Path(workdir) / "checkpoints", every_steps=10**9
        )  # orbax's first (step 1) and the final one
        state = run_stage(
            "reconstruction",
            step,
            state,
            RepeatedBatch(*batch),
            workdir=Path(workdir),
            checkpoints=checkpoints,
            mesh=mesh,
            num_epochs=1,
            steps_in_epoch=total_steps,
            frozen_args=(vgg,),
            max_steps=total_steps,
            hook=hook,
            log_every_steps=log_every,
        )
    return times[total_steps] - times[first_timed], state


def measure_loop(args) -> dict:
    """The loop variant in this process: steps/s of the bare step and of the trainer's loop,
    fetching the losses every --log_every steps and every step, in interleaved rounds."""
    import jax
    import numpy as np

    if args.loop_steps % args.log_every or args.loop_steps <= args.log_every:
        raise SystemExit(f"--log_every {args.log_every} must divide --loop_steps {args.loop_steps} and be smaller")
    step, (state, vgg, source, driving), _ = build_step(args.config, args.size, args.batch, args.dtype, "l1")
    _, state = bare_seconds(step, state, (vgg, source, driving), args.warmup + 1)  # compiles the step
    batch = (np.asarray(source), np.asarray(driving))  # on the host: the loop puts every batch on the devices itself
    timed = args.loop_steps - args.log_every
    seconds = {"bare": [], "loop": [], "fetch_every_step": []}
    for _ in range(args.repeats):
        elapsed, state = bare_seconds(step, state, (vgg, source, driving), timed)
        seconds["bare"].append(elapsed)
        for name, log_every in (("loop", args.log_every), ("fetch_every_step", 1)):
            elapsed, state = loop_seconds(step, state, vgg, batch, args.loop_steps, log_every, args.log_every)
            seconds[name].append(elapsed)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    return {
        **{f"{name}_steps_per_s": round(timed / s, 2) for name, s in median.items()},
        # against the bare step of the same round: the rounds share the machine's load of their moment
        **{
            f"{name}_overhead_pct": round(100 * (statistics.median(np.divide(seconds[name], seconds["bare"])) - 1), 1)
            for name in ("loop", "fetch_every_step")
        },
        "timed_steps": timed,
        "log_every_steps": args.log_every,
        "rounds": args.repeats,
        "seconds": {name: [round(x, 3) for x in s] for name, s in seconds.items()},
        **peak_memory(),
        "device": str(jax.devices()[0]),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/vox256.py")
    parser.add_argument("--size", type=int, default=256, help="frame side (overrides the config's frame_shape)")
    parser.add_argument("--batch", type=int, default=2, help="global batch (split over all devices)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"), help="model_params.compute_dtype"
    )
    parser.add_argument("--variants", default=",".join(STEP_VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--loop_steps", type=int, default=40, help="loop variant: steps per loop run")
    parser.add_argument(
        "--log_every", type=int, default=10, help="loop variant: log_every_steps (divides --loop_steps)"
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: measure one variant here
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(measure_loop(args) if args.variant == "loop" else measure(args)))
        return
    results = {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        forwarded = [
            "--config",
            args.config,
            "--size",
            str(args.size),
            "--batch",
            str(args.batch),
            "--warmup",
            str(args.warmup),
            "--repeats",
            str(args.repeats),
            "--dtype",
            args.dtype,
            "--loop_steps",
            str(args.loop_steps),
            "--log_every",
            str(args.log_every),
            "--variant",
            variant,
        ]
        results[variant] = run_isolated(__file__, forwarded)
        print(f"{variant}: {summary_line(results[variant])}", flush=True)
    first = next(iter(results.values()))
    report = {
        "config": args.config,
        "size": args.size,
        "batch": args.batch,
        "compute_dtype": args.dtype,
        "warmup_steps": args.warmup,
        "repeats": args.repeats,
        "statistic": "median step time over repeats",
        "vgg19": "randomly initialised (no weights downloaded): timing only",
        "results": results,
        "device": first["device"],
        "device_count": first["device_count"],
        "cpus": os.cpu_count(),
        **cpu_description(),
        "jax": first["jax"],
    }
    step_rows = {name: r for name, r in results.items() if name != "loop"}
    tables = (
        [
            table(
                step_rows, ["compile_s", "step_s", "examples_per_s", "peak_rss_mib", "device_peak_mib", "step_peak_mib"]
            )
        ]
        if step_rows
        else []
    )
    if "loop" in results:
        tables.append(table({"loop": results["loop"]}, LOOP_COLUMNS))
    emit(report, "\n\n".join(tables), args.out)


def summary_line(result: dict) -> str:
    """One line of a variant's result, printed as it comes in."""
    if "step_s" in result:
        return f"compiled in {result['compile_s']} s, {result['step_s']} s/step"
    return ", ".join(f"{k} {result[k]}" for k in LOOP_COLUMNS)


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # as the launch scripts do: mraa_jax/process_tuning.py
    main()
