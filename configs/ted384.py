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
"""
from mraa_jax.config import config_from_dict


def get_config():
    """Return the complete, validated ted384 ConfigDict."""
    return config_from_dict({
        "dataset_params": {
            "root_dir": "data/TED384-v2",
            "frame_shape": None,
            "id_sampling": True,
            "pairs_list": None,
            "augmentation_params": {
                "flip_param": {"horizontal_flip": True, "time_flip": True},
                "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
            },
        },
        "model_params": {
            "num_regions": 10,
            "num_channels": 3,
            "estimate_affine": True,
            "revert_axis_swap": True,
            "bg_predictor_params": {
                "block_expansion": 32,
                "max_features": 1024,
                "num_blocks": 5,
                "bg_type": "affine",
            },
            "region_predictor_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
                "pca_based": True,
                "pad": 0,
                "fast_svd": False,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "skips": True,
                "pixelwise_flow_predictor_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                    "use_deformed_source": True,
                    "use_covar_heatmap": True,
                    "estimate_occlusion_map": True,
                },
            },
            "avd_network_params": {"id_bottle_size": 64, "pose_bottle_size": 64},
        },
        "train_params": {
            "num_epochs": 100,
            "num_repeats": 150,
            "epoch_milestones": [60, 90],
            "lr": 2.0e-4,
            "batch_size": 6,
            "use_sync_bn": False,  # absent from the YAML: train.py's default
            "dataloader_workers": 6,
            "checkpoint_freq": 50,
            "scales": [1, 0.5, 0.25, 0.125],
            "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
            "loss_weights": {
                "perceptual": [10, 10, 10, 10, 10],
                "equivariance_shift": 10,
                "equivariance_affine": 10,
            },
        },
        "train_avd_params": {
            "num_epochs": 30,
            "num_repeats": 150,
            "batch_size": 256,
            "dataloader_workers": 12,
            "checkpoint_freq": 50,
            "epoch_milestones": [20, 25],
            "lr": 1.0e-3,
            "random_scale": 0.25,
            "lambda_shift": 1,
            "lambda_affine": 1,
        },
        "reconstruction_params": {"num_videos": 1000, "format": ".mp4"},
        "animate_params": {"num_pairs": 50, "format": ".mp4", "mode": "avd"},
        "visualizer_params": {
            "kp_size": 5,
            "draw_border": True,
            "colormap": "gist_rainbow",
            "region_bg_color": [1, 1, 1],
        },
    })
