"""MRAA on VoxCeleb (talking heads), 256x256: the original's `config/vox256.yaml`.

Train:
    python launch_train.py --config configs/vox256.py --workdir runs/vox256
Any field can be overridden from the command line, e.g.
    --config.train_params.batch_size=8

Data: `dataset_params.root_dir` holds `train/` and `test/` folders of videos; with
id_sampling each epoch samples one video per identity (the id is the file name before
'#'). frame_shape null: frames are used at their stored size (256x256).

Values mirror the published `config/vox256.yaml` (snap-research/articulated-animation,
commit 66979be) key for key; that file omits region_predictor_params.pad, so the
constructor default 3 applies. The architecture values are checked against the
parameter shapes of the published vox256.pth (`state_dict_manifests.json`) in
tests/test_config.py. Expected results with this reimplementation: not yet measured.

The values all four share (and those most of them hold) are mraa_jax/published.py's
BASE; get_config() sets this config's differences.
"""

from mraa_jax.config import config_from_dict
from mraa_jax.published import published


def get_config():
    """Return the complete, validated vox256 ConfigDict."""
    return config_from_dict(
        published(
            {
                "dataset_params.root_dir": "data/vox-png",
                "model_params.region_predictor_params.pad": 3,
                "train_params.num_repeats": 75,
                "train_avd_params.num_repeats": 2000,
                "train_avd_params.dataloader_workers": 20,
            }
        )
    )
