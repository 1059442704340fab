"""MRAA on Moving-GIF (cartoon animals), 256x256: the original's `config/mgif256.yaml`.

Train:
    python launch_train.py --config configs/mgif256.py --workdir runs/mgif256
Any field can be overridden from the command line, e.g.
    --config.train_params.batch_size=8

Data: `dataset_params.root_dir` holds `train/` and `test/` folders of .gif videos;
id_sampling off (each video is its own identity). Augmentation adds a random crop to
256x256 after a random resize by 0.9-1.1 and a strong hue jitter. frame_shape null:
frames are used at their stored size.

Values mirror the published `config/mgif256.yaml` (snap-research/articulated-animation,
commit 6b20297) key for key; that file has no pairs_list, so the dataset default (null,
random pairs) is filled in. bg_type is 'zero' (no background motion, no bg_predictor
parameters) and pad is 0 (the region heatmap is 6 pixels smaller than the hourglass
output: its 7x7 output convolution is unpadded). The architecture values are checked against the
parameter shapes of the published mgif256.pth (`state_dict_manifests.json`) in
tests/test_config.py. Expected results with this reimplementation: not yet measured.

The values all four share (and those most of them hold) are mraa_jax/published.py's
BASE; get_config() sets this config's differences.
"""

from mraa_jax.config import config_from_dict
from mraa_jax.published import published


def get_config():
    """Return the complete, validated mgif256 ConfigDict."""
    return config_from_dict(
        published(
            {
                "dataset_params.root_dir": "data/moving-gif",
                "dataset_params.id_sampling": False,
                "dataset_params.augmentation_params": {
                    "flip_param": {"horizontal_flip": True, "time_flip": True},
                    "crop_param": {"size": [256, 256]},
                    "resize_param": {"ratio": [0.9, 1.1]},
                    "jitter_param": {"hue": 0.5},
                },
                "model_params.bg_predictor_params.bg_type": "zero",
                "train_params.num_repeats": 50,
                "train_avd_params.num_repeats": 50,
                "train_avd_params.epoch_milestones": [60, 90],  # as published (beyond num_epochs: no decay)
            }
        )
    )
