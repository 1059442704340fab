"""Our parameter trees of the four published configs, mapped by the converter's name map,
match the original's state dicts (tests/fixtures/state_dict_manifests.json) name for
name and shape for shape."""

from __future__ import annotations

import json
import math

import jax
import pytest
from conftest import FIXTURES, REPO

from mraa_jax.config import load_config
from mraa_jax.convert import flat_leaves, flax_to_torch, flax_to_torch_shape, torch_to_flax
from mraa_jax.geometry import antialias_kernel
from mraa_jax.model import NETWORKS, build_networks, config_frame_shape, init_variables

MANIFESTS = FIXTURES / "state_dict_manifests.json"
CONFIGS = ("vox256", "taichi256", "ted384", "mgif256")


@pytest.fixture(scope="module")
def manifests():
    return json.loads(MANIFESTS.read_text())["configs"]


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_tree_matches_manifest(manifests, name):
    config = load_config(REPO / "configs" / f"{name}.py")
    networks = build_networks(config.model_params)
    abstract = jax.eval_shape(lambda: init_variables(networks, jax.random.PRNGKey(0), config_frame_shape(config)))
    for network in NETWORKS:
        state_dict = manifests[name][network]["state_dict"]
        ours = {
            flax_to_torch(c, p): flax_to_torch_shape(tuple(leaf.shape))
            for (c, p), leaf in flat_leaves(abstract[network]).items()
        }
        theirs = {}
        for torch_name, entry in state_dict.items():
            shape = tuple(entry["shape"])
            if torch_name.endswith("down.weight"):
                # The constant anti-alias kernel: recomputed, not loaded. Its size must agree.
                assert shape[-2:] == antialias_kernel(antialias_scale(config, torch_name)).shape
                continue
            if torch_to_flax(torch_name, len(shape)) is None:
                assert torch_name.endswith("num_batches_tracked")
                continue
            theirs[torch_name] = shape
        assert sorted(set(theirs) - set(ours)) == [], f"{name}/{network}: in the original, not in ours"
        assert sorted(set(ours) - set(theirs)) == [], f"{name}/{network}: in ours, not in the original"
        mismatched = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
        assert mismatched == {}, f"{name}/{network}: shapes differ (ours, original)"
        trainable = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(abstract[network]["params"]))
        assert trainable == manifests[name][network]["num_trainable_parameters"]


def antialias_scale(config, torch_name: str) -> float:
    """The scale factor of the network that owns an anti-alias buffer."""
    if torch_name.startswith("pixelwise_flow_predictor"):
        return config.model_params.generator_params.pixelwise_flow_predictor_params.scale_factor
    return config.model_params.region_predictor_params.scale_factor


def test_name_map_round_trips():
    for name, ndim in [
        ("predictor.encoder.down_blocks.0.conv.weight", 4),
        ("id_encoder.4.running_var", 1),
        ("fc.weight", 2),
        ("bottleneck.r3.norm2.weight", 1),
    ]:
        collection, path = torch_to_flax(name, ndim)
        assert flax_to_torch(collection, path) == name
