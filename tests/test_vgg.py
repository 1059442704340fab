"""VGG-19 features of our Flax module, with converted torchvision-layout weights,
against a plain NumPy/SciPy forward pass."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.signal import correlate

from mraa_jax.losses import IMAGENET_MEAN, IMAGENET_STD, VGG19_CONVS, VGG19Features, perceptual_loss
from mraa_jax.vgg_weights import load_vgg19_params, vgg_params_from_state_dict


def random_torchvision_state_dict(rng) -> dict:
    state, in_channels = {}, 3
    for index, width in VGG19_CONVS:
        scale = np.sqrt(2.0 / (in_channels * 9))  # He init keeps activations O(1) through 13 layers
        state[f"features.{index}.weight"] = (rng.standard_normal((width, in_channels, 3, 3)) * scale).astype(np.float32)
        state[f"features.{index}.bias"] = (rng.standard_normal(width) * 0.1).astype(np.float32)
        in_channels = width
    state["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # present in the real file, ignored
    return state


def reference_features(image: np.ndarray, state: dict) -> list[np.ndarray]:
    """torchvision's vgg19().features[:30] in float64 NumPy, one (H, W, C) image, outputs at relu1_1..relu5_1."""
    x = (image.astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD
    outputs = []
    for index, _ in VGG19_CONVS:
        if index in (5, 10, 19, 28):
            h, w, c = x.shape
            x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
        weight = state[f"features.{index}.weight"].astype(np.float64)  # (O, I, 3, 3)
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        out = np.stack(
            [
                correlate(padded, np.transpose(weight[o], (1, 2, 0)), mode="valid")[..., 0]
                for o in range(weight.shape[0])
            ],
            -1,
        )
        x = np.maximum(out + state[f"features.{index}.bias"], 0)
        if index in (0, 5, 10, 19, 28):
            outputs.append(x)
    return outputs


def test_features_match_numpy_reference():
    rng = np.random.default_rng(0)
    state = random_torchvision_state_dict(rng)
    image = rng.random((1, 16, 16, 3), np.float32)  # relu5_1 is then 1x1
    ours = jax.jit(VGG19Features().apply)({"params": vgg_params_from_state_dict(state)}, image)
    reference = reference_features(image[0], state)
    assert len(ours) == 5
    for level, (a, b) in enumerate(zip(ours, reference)):
        assert a.shape[1:] == b.shape, f"relu{level + 1}_1 shape"
        # float32 through up to 13 convolutions vs float64: relative error ~1e-5 of the layer's scale.
        np.testing.assert_allclose(
            np.asarray(a[0]), b, atol=1e-4 * max(1.0, np.abs(b).max()), err_msg=f"relu{level + 1}_1"
        )


@pytest.mark.slow
def test_perceptual_loss_is_zero_for_identical_images_and_positive_otherwise():
    rng = np.random.default_rng(1)
    params = vgg_params_from_state_dict(random_torchvision_state_dict(rng))
    vgg = lambda x: VGG19Features().apply({"params": params}, x)  # noqa: E731
    a = rng.random((1, 32, 32, 3), np.float32)
    b = rng.random((1, 32, 32, 3), np.float32)
    assert float(perceptual_loss(vgg, a, a, (1, 0.5), (10,) * 5)) == 0.0
    assert float(perceptual_loss(vgg, a, b, (1, 0.5), (10,) * 5)) > 0.0


def test_bad_weight_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="vgg19-dcbabf67.pth"):
        load_vgg19_params(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="features.0.weight"):
        vgg_params_from_state_dict({})
