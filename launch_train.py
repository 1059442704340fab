"""Train MRAA: the reconstruction stage, then the AVD stage (or the whole main job).

    python launch_train.py --config configs/shapes.py --workdir runs/shapes --mode all      # the main job
    python launch_train.py --config configs/vox256.py --workdir runs/vox256
    python launch_train.py --config configs/vox256.py --workdir runs/vox256 --mode train_avd
    python launch_train.py --config configs/vox256.py --workdir runs/ft --init_from converted/vox256   # fine-tune
    python launch_train.py --config configs/vox256.py --workdir runs/ft --init_from vox.pth           # or from the original's file

Config fields are overridable: --config.train_params.batch_size=8, lists as tuples:
--config.train_params.scales='(1, 0.5)'. A workdir that
holds checkpoints resumes from the latest one. The dataset (config
dataset_params.root_dir: a video root in the original's layout, or `synthetic`
for the built-in figures) is built once into --data_dir. Several hosts: set
--distributed (or JAX's coordinator environment variables); each process then
reads its own share of every batch.

--mode all runs the main job (mraa_jax.main_job): both stages, then reconstruction
of the test videos, an animation, a loss-curve plot, and a summary of where it all is.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mraa_jax import data
from mraa_jax.config import load_config, report_ignored
from mraa_jax.evaluation.runs import prepare_dataset
from mraa_jax.main_job import format_summary, run_main_job
from mraa_jax.process_tuning import tune_process
from mraa_jax.training.trainer import train_avd, train_reconstruction

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<name>.py", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and the trained model")
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "train_avd", "all"],
    "train: reconstruction stage; train_avd: AVD stage; all: both, then evaluate and animate (the main job)",
)
_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "where datasets are built (once) and read")
_INIT_FROM = flags.DEFINE_string(
    "init_from", None, "model directory (a converted original or our own) or original .pth checkpoint to fine-tune"
)
_MAX_STEPS = flags.DEFINE_integer(
    "max_steps", None, "stop after this many optimiser steps (default: the config's epochs)"
)
_AVD_MAX_STEPS = flags.DEFINE_integer("avd_max_steps", None, "--mode all: the AVD stage's --max_steps")
_SEED = flags.DEFINE_integer("seed", 0, "seed of initialisation, data order and transforms")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (several hosts)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _DISTRIBUTED.value or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    config = load_config(_CONFIG.value)  # the overridden config, filled and checked again
    report_ignored(config, flags.FLAGS["config"].config_filename)
    if _MODE.value == "all":
        result = run_main_job(
            config,
            _WORKDIR.value,
            _DATA_DIR.value,
            seed=_SEED.value,
            max_steps=_MAX_STEPS.value,
            avd_max_steps=_AVD_MAX_STEPS.value,
        )
        if jax.process_index() == 0:
            print(format_summary(result))
        return
    summary = prepare_dataset(config, _DATA_DIR.value)
    source = data.open_split(summary.dataset_dir, "train")
    dp = config.dataset_params
    params = config.train_params if _MODE.value == "train" else config.train_avd_params
    pipeline = data.training_pairs(
        source,
        params.batch_size,
        seed=_SEED.value,
        num_repeats=params.num_repeats,
        id_sampling=dp.id_sampling,
        augmentation=dp.augmentation_params,
    )
    common = dict(steps_in_epoch=pipeline.steps_per_epoch, max_steps=_MAX_STEPS.value, seed=_SEED.value)
    if _MODE.value == "train":
        train_reconstruction(config, _WORKDIR.value, pipeline, init_from=_INIT_FROM.value, **common)
    else:
        train_avd(config, _WORKDIR.value, pipeline, **common)
    if jax.process_index() == 0:
        print(f"trained model: {Path(_WORKDIR.value) / 'model'} (load it with mraa_jax.load)")


if __name__ == "__main__":
    tune_process(restart_with_huge_pages=True)  # mraa_jax/process_tuning.py: less memory, fewer page faults
    app.run(main)
