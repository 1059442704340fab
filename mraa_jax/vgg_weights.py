"""ImageNet VGG-19 weights for the perceptual loss, from torchvision's weight file.

torchvision's `vgg19-dcbabf67.pth` (a state dict: `features.<i>.weight/bias`,
`classifier...`) is what PyTorch users have cached, usually under
~/.cache/torch/hub/checkpoints/. Only the convolutions up to relu5_1 are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mraa_jax.losses import VGG19_CONVS

WHERE_TO_GET = (
    "torchvision's ImageNet VGG-19 weights, file vgg19-dcbabf67.pth: PyTorch users have it in "
    "~/.cache/torch/hub/checkpoints/ after torchvision.models.vgg19(weights='IMAGENET1K_V1'); "
    "set train_params.vgg19_weights to its path, or set the perceptual loss weights to 0"
)


def vgg_params_from_state_dict(state_dict: dict) -> dict:
    """Flax params of `VGG19Features` from a torchvision-layout state dict of NumPy arrays."""
    params = {}
    for index, width in VGG19_CONVS:
        weight_name, bias_name = f"features.{index}.weight", f"features.{index}.bias"
        if weight_name not in state_dict or bias_name not in state_dict:
            raise ValueError(f"not a torchvision VGG-19 state dict: {weight_name} or {bias_name} is missing")
        weight = np.asarray(state_dict[weight_name], np.float32)
        if weight.shape[0] != width or weight.shape[2:] != (3, 3):
            raise ValueError(f"{weight_name}: expected ({width}, in, 3, 3), got {weight.shape}")
        params[f"features_{index}"] = {
            "kernel": np.transpose(weight, (2, 3, 1, 0)),
            "bias": np.asarray(state_dict[bias_name], np.float32),
        }
    return params


def load_vgg19_params(path) -> dict:
    """Flax params of `VGG19Features` read from torchvision's weight file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG-19 weights not found at {path}; expected {WHERE_TO_GET}")
    from mraa_jax.convert import read_torch_checkpoint

    return vgg_params_from_state_dict(read_torch_checkpoint(path))
