"""MRAA on TED-talks (upper bodies), 384x384: the original's `config/ted384.yaml`.

Train:
    python launch_train.py --config configs/ted384.py --workdir runs/ted384
Any field can be overridden from the command line, e.g.
    --config.train_params.batch_size=4

Data: `dataset_params.root_dir` (the original's TED384-v2 release) holds `train/` and
`test/` folders of videos; with id_sampling each epoch samples one video per identity
(the id is the file name before '#'). frame_shape null: frames are used at their stored
size (384x384).

Values mirror the published `config/ted384.yaml` (snap-research/articulated-animation,
commit 6b20297) key for key. Note pad: 0 there: the region heatmap is 6 pixels smaller
than the hourglass output (its 7x7 output convolution is unpadded); converted ted384 weights depend on
it. The architecture values are checked against the parameter shapes of the published
ted384.pth (`state_dict_manifests.json`) in tests/test_config.py.
Expected results with this reimplementation: not yet measured.

The values all four share (and those most of them hold) are mraa_jax/published.py's
BASE; get_config() sets this config's differences.
"""

from mraa_jax.config import config_from_dict
from mraa_jax.published import published


def get_config():
    """Return the complete, validated ted384 ConfigDict."""
    return config_from_dict(
        published(
            {
                "dataset_params.root_dir": "data/TED384-v2",
                "train_params.batch_size": 6,
            }
        )
    )
