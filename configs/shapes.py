"""A small MRAA on the built-in synthetic articulated figures (64x64): the main job's config.

    python launch_train.py --config configs/shapes.py --workdir runs/shapes

The main job's config (README, Quickstart: held-out L1 about 0.47 of copying the source
frame). Needs no download: the dataset is generated
on first use into --data_dir. The perceptual loss is off (it needs ImageNet VGG-19
weights); an L1 pyramid over train_params.scales stands in. Sized for 5.5-8 minutes
of training on 2 CPU cores: 2400 steps of batch 8 at about 0.13-0.19 s each, Adam at 1e-3
(tried 2e-4 to 2e-3: 1e-3 learned fastest), divided by 10 for the last two epochs.
Speed over width: the region and flow predictors see the frames at 16x16 and the
generator starts at 8 channels, which makes a step 2.2x faster than 32x32 and 16
channels and, at equal training time, reconstructs better (docs/synthetic_dataset.md).
Equivariance losses at weight 1, not the published configs' 10: next to the small L1 pyramid
(about 0.12) they dominated the loss at 10 and drew every region onto one point of the body (a
broad heatmap over the whole figure is the most equivariant); at 1 the regions spread over the
figure and reconstruction is as good (docs/synthetic_dataset.md).
A step whose gradient is not finite (one of 11 tuning runs of this size had one) is
skipped rather than stopping training (skip_nonfinite_steps: at most 10 in a row).
"""

from mraa_jax.config import config_from_dict


def get_config():
    """Return the complete, validated shapes ConfigDict."""
    return config_from_dict(
        {
            "dataset_params": {
                "root_dir": "synthetic",
                "synthetic": {"num_train": 300, "num_test": 50, "frames": 32, "size": 64, "seed": 0},
                "frame_shape": [64, 64, 3],
                "id_sampling": False,
                "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True}},
            },
            "model_params": {
                "num_regions": 8,
                "num_channels": 3,
                "estimate_affine": True,
                "revert_axis_swap": True,
                "bg_predictor_params": {"block_expansion": 8, "max_features": 64, "num_blocks": 3, "bg_type": "zero"},
                "region_predictor_params": {
                    "temperature": 0.1,
                    "block_expansion": 16,
                    "max_features": 128,
                    "scale_factor": 0.25,
                    "num_blocks": 4,
                    "pca_based": True,
                    "pad": 3,
                },
                "generator_params": {
                    "block_expansion": 8,
                    "max_features": 128,
                    "num_down_blocks": 2,
                    "num_bottleneck_blocks": 2,
                    "skips": True,
                    "pixelwise_flow_predictor_params": {
                        "block_expansion": 16,
                        "max_features": 128,
                        "num_blocks": 4,
                        "scale_factor": 0.25,
                        "use_deformed_source": True,
                        "use_covar_heatmap": True,
                        "estimate_occlusion_map": True,
                    },
                },
                "avd_network_params": {"id_bottle_size": 32, "pose_bottle_size": 32},
            },
            "train_params": {
                "num_epochs": 8,
                "num_repeats": 8,
                "epoch_milestones": [6],
                "lr": 1.0e-3,
                "batch_size": 8,
                "scales": [1, 0.5, 0.25, 0.125],
                "checkpoint_every_steps": 500,
                "skip_nonfinite_steps": 10,
                "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                "loss_weights": {
                    "perceptual": [0, 0, 0, 0, 0],
                    "l1": 1.0,
                    "equivariance_shift": 1.0,
                    "equivariance_affine": 1.0,
                },
            },
            "train_avd_params": {
                "num_epochs": 2,
                "num_repeats": 4,
                "epoch_milestones": [],
                "lr": 1.0e-3,
                "batch_size": 32,
                "random_scale": 0.25,
                "lambda_shift": 1,
                "lambda_affine": 1,
            },
            "animate_params": {"mode": "relative"},
        }
    )
