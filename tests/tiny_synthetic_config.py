"""A tiny config on the built-in synthetic figures, for end-to-end tests of the launchers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import tiny_training_config  # noqa: E402


def get_config():
    config = tiny_training_config()
    config.dataset_params.root_dir = "synthetic"
    config.dataset_params.synthetic = {"num_train": 4, "num_test": 2, "frames": 6, "size": 32, "seed": 0}
    config.dataset_params.augmentation_params = {"flip_param": {"horizontal_flip": True, "time_flip": True}}
    config.train_params.num_repeats = 2
    config.train_params.checkpoint_every_steps = 2
    config.train_avd_params.num_repeats = 2
    return config
