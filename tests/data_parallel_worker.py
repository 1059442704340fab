"""Subprocess worker for the data-parallel tests: trains the tiny fixture config a few steps.

    python tests/data_parallel_worker.py --devices 2 --steps 2 --out params.npy [--process_id 0 --num_processes 2 --port 12345]

Sets the host device count before jax starts. Every process builds the same
global batch and feeds its own contiguous share of it, so any layout of devices
and processes trains on the same data. Process 0 writes all parameters,
flattened, to --out.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's mraa_jax, whatever else is installed
sys.path.insert(0, str(REPO / "tests"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1, help="CPU devices per process")
    parser.add_argument(
        "--meshes", default="", help="comma-separated device counts: train once on each sub-mesh (one process)"
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="global batch size")
    parser.add_argument("--no_sync_bn", action="store_true")
    parser.add_argument("--out", required=True, help="output .npy; with --meshes, one file per mesh: <out>.<n>.npy")
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax

    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            f"127.0.0.1:{args.port}", num_processes=args.num_processes, process_id=args.process_id
        )

    import numpy as np
    import optax
    from conftest import FIXTURE

    from mraa_jax.config import load_config
    from mraa_jax.model import MRAA, build_networks
    from mraa_jax.training import steps

    config = load_config(FIXTURE / "config.yaml")
    config.dataset_params.frame_shape = [32, 32, 3]
    # The regression variant: at random initialisation the PCA variant's covariances are
    # near-isotropic, where the SVD's U (and so every later step) is discontinuous in
    # float noise; this test is about data parallelism, not that.
    config.model_params.region_predictor_params.pca_based = False
    train_params = config.train_params.to_dict()
    train_params["loss_weights"]["l1"] = 1.0
    # Full-resolution L1 only: the coarse scales of the L1 pyramid double the gradients,
    # and with them how far float noise grows in a few steps (to ~1.2e-5 at 2 devices in three).
    train_params["scales"] = [1]
    sync_bn = not args.no_sync_bn
    networks = build_networks(config.model_params, bn_axis_name=steps.AXIS if sync_bn else None)
    # SGD, not Adam: Adam's update is about +-lr for any gradient near zero, so float
    # noise in such gradients (summation order differs with the device count) would
    # show up as lr-sized differences that say nothing about data parallelism.
    optimizer = optax.sgd(0.01)
    variables = jax.device_get(MRAA.random(config, seed=0).variables)  # host copies: each run donates its own

    def train(mesh):
        state = steps.replicate(mesh, steps.init_train_state(variables, optimizer, jax.random.PRNGKey(1)))
        step = steps.build_reconstruction_step(networks, optimizer, train_params, mesh, sync_bn)
        rng = np.random.default_rng(0)
        share = args.batch // args.num_processes
        mine = slice(args.process_id * share, (args.process_id + 1) * share)
        for _ in range(args.steps):
            source = rng.random((args.batch, 32, 32, 3), np.float32)
            driving = rng.random((args.batch, 32, 32, 3), np.float32)
            state, metrics = step(state, {}, *steps.shard_batch(mesh, source[mine], driving[mine]))
        print("loss", {k: round(float(v), 6) for k, v in metrics.items()})
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(jax.device_get(state.params))])

    if args.meshes:
        for count in (int(c) for c in args.meshes.split(",")):
            np.save(f"{args.out}.{count}.npy", train(steps.make_mesh(jax.devices()[:count])))
    else:
        params = train(steps.make_mesh())
        if args.process_id == 0:
            np.save(args.out, params)


if __name__ == "__main__":
    main()
