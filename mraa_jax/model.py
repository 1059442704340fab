"""The whole MRAA model: its four networks built from a config, and their variables.

`MRAA` is the library's front door for research use: region params of images,
background transform, generation, AVD and animation, all jitted and in eval mode
(BatchNorm on running statistics), float32, NHWC images in [0, 1].

`model_params.compute_dtype: bfloat16` (or `MRAA.with_compute_dtype("bfloat16")`)
runs the convolutions of the region predictor, background predictor and generator in
bfloat16, for less memory on GPUs (on CPU, float32 with Winograd is faster). Parameters, inputs and outputs
stay float32, and so do the numerically sensitive parts: the output convs and their
softmax/sigmoid, the region parameters and their SVD, BatchNorm statistics, warping
and the AVD network (a small MLP whose inputs and outputs are region parameters).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mraa_jax import animation, process_tuning
from mraa_jax.config import COMPUTE_DTYPES
from mraa_jax.errors import InputError
from mraa_jax.modules.avd import AVDNetwork
from mraa_jax.modules.bg_predictor import BGMotionPredictor
from mraa_jax.modules.generator import Generator, warp
from mraa_jax.modules.region_predictor import RegionPredictor
from mraa_jax.region_params import RegionParams

NETWORKS = ("generator", "region_predictor", "bg_predictor", "avd_network")


@dataclasses.dataclass(frozen=True)
class Networks:
    """The four Flax modules of a config; stateless (variables live elsewhere)."""

    region_predictor: RegionPredictor
    bg_predictor: BGMotionPredictor
    generator: Generator
    avd_network: AVDNetwork
    compute_dtype: Any = jnp.float32  # of the convs (model_params.compute_dtype); the VGG loss uses it too


def build_networks(model_params: ml_collections.ConfigDict, bn_axis_name: str | None = None) -> Networks:
    """Flax modules from `config.model_params`, as the original's run.py builds them.

    `bn_axis_name`: device axis over which train-mode BatchNorm statistics are
    averaged (synchronised BatchNorm), or None.
    """
    mp = model_params
    compute_dtype = mp.compute_dtype
    if compute_dtype not in COMPUTE_DTYPES:
        raise InputError(
            f"model_params.compute_dtype: expected one of {', '.join(COMPUTE_DTYPES)}, got {compute_dtype!r}"
        )
    dtype = jnp.dtype(compute_dtype)
    rp = mp.region_predictor_params
    region_predictor = RegionPredictor(
        block_expansion=rp.block_expansion,
        num_regions=mp.num_regions,
        num_channels=mp.num_channels,
        max_features=rp.max_features,
        num_blocks=rp.num_blocks,
        temperature=rp.temperature,
        estimate_affine=mp.estimate_affine,
        scale_factor=rp.scale_factor,
        pca_based=rp.pca_based,
        pad=rp.pad,
        bn_axis_name=bn_axis_name,
        dtype=dtype,
    )
    bp = mp.bg_predictor_params
    bg_predictor = BGMotionPredictor(
        block_expansion=bp.block_expansion,
        num_channels=mp.num_channels,
        max_features=bp.max_features,
        num_blocks=bp.num_blocks,
        bg_type=bp.bg_type,
        bn_axis_name=bn_axis_name,
        dtype=dtype,
    )
    gp = mp.generator_params
    generator = Generator(
        num_channels=mp.num_channels,
        num_regions=mp.num_regions,
        block_expansion=gp.block_expansion,
        max_features=gp.max_features,
        num_down_blocks=gp.num_down_blocks,
        num_bottleneck_blocks=gp.num_bottleneck_blocks,
        pixelwise_flow_predictor_params=tuple(sorted(gp.pixelwise_flow_predictor_params.to_dict().items())),
        skips=gp.skips,
        revert_axis_swap=mp.revert_axis_swap,
        bn_axis_name=bn_axis_name,
        dtype=dtype,
    )
    ap = mp.avd_network_params
    avd_network = AVDNetwork(
        num_regions=mp.num_regions,
        id_bottle_size=ap.id_bottle_size,
        pose_bottle_size=ap.pose_bottle_size,
        revert_axis_swap=ap.revert_axis_swap,
        bn_axis_name=bn_axis_name,
    )
    return Networks(region_predictor, bg_predictor, generator, avd_network, dtype)


def config_frame_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(H, W, C) frames of the config; 256x256 where the config leaves frames unresized (null)."""
    shape = config.dataset_params.frame_shape
    return tuple(shape) if shape else (256, 256, config.model_params.num_channels)


def init_variables(networks: Networks, rng: jax.Array, frame_shape, names=NETWORKS) -> dict[str, dict]:
    """Random variables of the networks `names` for frames of shape (H, W, C): {network: {'params', 'batch_stats'}}.

    One compiled program per network, run one after another, so that the host holds one
    program at a time; each holds only the initialisers (flax's lazy_init traces the forward
    pass on shapes, not values).
    """
    h, w, c = frame_shape
    k = networks.region_predictor.num_regions
    image = jax.ShapeDtypeStruct((1, h, w, c), jnp.float32)
    matrices = jax.ShapeDtypeStruct((1, k, 2, 2), jnp.float32)
    params = RegionParams(shift=jax.ShapeDtypeStruct((1, k, 2), jnp.float32), covar=matrices, affine=matrices)
    inputs = {
        "region_predictor": (image,),
        "bg_predictor": (image, image),
        "generator": (image, params, params),
        "avd_network": (params, params),
    }
    keys = dict(zip(NETWORKS, jax.random.split(rng, len(NETWORKS))))
    variables = {}
    for name in names:
        module, args = getattr(networks, name), inputs[name]
        init = jax.jit(lambda key, module=module, args=args: module.lazy_init(key, *args))
        variables[name] = {"params": {}, "batch_stats": {}, **dict(init(keys[name]))}
    return variables


class MRAA:
    """A configured MRAA model with its variables, in eval mode.

    >>> model = MRAA.random(config)               # or mraa_jax.load(path)
    >>> p = model.regions(images)                 # (B, H, W, C) -> RegionParams
    >>> out = model.generate(source, model.regions(source), model.regions(driving))
    >>> video = model.animate(image, frames, mode="relative")
    """

    def __init__(
        self, config: ml_collections.ConfigDict, variables: dict[str, dict], untrained=(), source: str = "this model"
    ):
        """untrained: networks whose variables are random because the checkpoint lacks them
        (a first-stage checkpoint has no `avd_network`); source: where the model came from, for messages."""
        self.config = config
        self.networks = build_networks(config.model_params)
        self.variables = variables
        self.untrained = tuple(untrained)
        self.source = str(source)
        nets = self.networks
        from mraa_jax.streaming import stream_step  # here: mraa_jax.streaming imports this module

        # On CPU, convolutions compiled by Eigen (process_tuning.CPU_COMPILER_OPTIONS), as in training.
        self.compiler_options = process_tuning.cpu_compiler_options(jax.devices())
        jit = functools.partial(jax.jit, compiler_options=self.compiler_options)
        self._regions = jit(lambda v, x: nets.region_predictor.apply(v, x))
        self._background = jit(lambda v, s, d: nets.bg_predictor.apply(v, s, d))
        self._generate = jit(lambda v, s, sp, dp, bg: nets.generator.apply(v, s, dp, sp, bg))
        self._avd = jit(lambda v, sp, dp: nets.avd_network.apply(v, sp, dp))
        # Compiled pieces of animation, shared with mraa_jax.evaluation and mraa_jax.streaming.
        self.jitted = types.SimpleNamespace(
            regions=self._regions,
            encode=jit(lambda v, s: nets.generator.apply(v, s, method=Generator.encode)),
            animation_chunk=jit(functools.partial(animation_chunk, nets), static_argnames=("mode", "visual")),
            stream_step=jit(functools.partial(stream_step, nets), static_argnums=(0,)),
        )

    @classmethod
    def random(cls, config: ml_collections.ConfigDict, seed: int = 0) -> MRAA:
        """Randomly initialised model (PyTorch's default initialisation) for the config's frame shape."""
        networks = build_networks(config.model_params)
        return cls(config, init_variables(networks, jax.random.PRNGKey(seed), config_frame_shape(config)))

    def with_compute_dtype(self, compute_dtype: str) -> MRAA:
        """The same model (same variables) computing in `compute_dtype`: "float32" or "bfloat16"."""
        from mraa_jax.config import validate_config

        config = ml_collections.ConfigDict(self.config.to_dict())
        config.model_params.compute_dtype = compute_dtype
        validate_config(config)
        return MRAA(config, self.variables, self.untrained, self.source)

    def check_mode(self, mode: str) -> None:
        """InputError unless this model can animate in `mode`: "avd" needs a trained AVD network."""
        animation.check_mode(mode)
        if mode == "avd" and "avd_network" in self.untrained:
            raise InputError(
                f"{self.source}: the checkpoint has no AVD network (the second stage trains it: "
                "launch_train.py --mode train_avd); animate with mode 'standard' or 'relative'"
            )

    # -- single steps ---------------------------------------------------------

    def _batch(self, images, name: str) -> jax.Array:
        return _as_batch(images, name, self.config.model_params.num_channels)

    def regions(self, images: jax.Array) -> RegionParams:
        """Region params of (B, H, W, C) images in [0, 1]."""
        return self._regions(self.variables["region_predictor"], self._batch(images, "images"))

    def background(self, source: jax.Array, driving: jax.Array) -> jax.Array:
        """(B, 3, 3) background transforms from driving to source coordinates."""
        source, driving = self._batch(source, "source"), self._batch(driving, "driving")
        if source.shape != driving.shape:
            raise InputError(f"source and driving must have the same shape, got {source.shape} and {driving.shape}")
        return self._background(self.variables["bg_predictor"], source, driving)

    def generate(
        self,
        source: jax.Array,
        source_params: RegionParams,
        driving_params: RegionParams,
        bg: jax.Array | None = None,
    ) -> dict:
        """Render `source` in the driving regions: prediction, deformed, optical_flow, occlusion_map (or None)."""
        return self._generate(
            self.variables["generator"],
            self._batch(source, "source"),
            source_params.without_heatmap(),
            driving_params.without_heatmap(),
            bg,
        )

    def avd(self, source_params: RegionParams, driving_params: RegionParams) -> RegionParams:
        """Driving pose re-expressed for the source identity by the AVD network."""
        return self._avd(
            self.variables["avd_network"], source_params.without_heatmap(), driving_params.without_heatmap()
        )

    # -- animation ------------------------------------------------------------

    def animate(
        self, source_image: jax.Array, driving_frames: jax.Array, mode: str = "relative", chunk_size: int = 16
    ) -> jax.Array:
        """Animate one (H, W, C) image with (T, H, W, C) driving frames; returns (T, H, W, C).

        The source is encoded once; driving frames go through the networks in
        jitted chunks of `chunk_size` (the last one padded), so one compilation
        serves any video length.
        """
        self.check_mode(mode)
        source_image, driving_frames = check_animation_inputs(
            source_image, driving_frames, self.config.model_params.num_channels
        )
        source = source_image[None]
        source_params = self.regions(source).without_heatmap()
        initial = self.regions(driving_frames[:1]).without_heatmap()
        scale = animation.movement_scale(source_params.shift[0], initial.shift[0]) if mode == "relative" else 1.0
        variables = jax.device_put(self.variables)  # once: jit would copy host (NumPy) weights in every chunk call
        levels = self.jitted.encode(variables["generator"], source)
        outputs = [
            self.jitted.animation_chunk(
                variables, source, levels, source_params, initial, chunk, jnp.float32(scale), mode=mode, visual=False
            )["prediction"][:valid]
            for chunk, valid in padded_chunks(driving_frames, chunk_size)
        ]
        return jnp.concatenate(outputs)

    def stream(self, source_image, mode: str = "relative"):
        """A `mraa_jax.streaming.Stream`: `source_image` encoded once, then `push(frame) -> frame`
        animates one driving frame at a time, as `animate` would animate the clip of the pushed frames."""
        from mraa_jax.streaming import Stream

        return Stream(self, source_image, mode)


ANIMATION_CHUNK_MODES = animation.MODES + ("reconstruction",)


def animation_chunk(
    nets: Networks,
    variables,
    source,
    levels,
    source_params,
    initial,
    chunk,
    scale,
    *,
    mode: str,
    visual: bool,
    driving_full: RegionParams | None = None,
) -> dict:
    """Outputs for a chunk (B, H, W, C) of driving frames, given the encoded (1, ...) source.

    mode: an animation mode, or "reconstruction" (the driving frames' own regions and the
    background matrix from (source, driving), as in training). driving_full: the chunk's region
    params where the caller has computed them already (the stream takes its reference from them).
    Returns {"prediction"} and, with `visual`, "deformed", "occlusion_map" (if predicted),
    "driving_shift", "driving_heatmap".
    """
    if driving_full is None:
        driving_full = nets.region_predictor.apply(variables["region_predictor"], chunk)
    driving = driving_full.without_heatmap()
    batch = chunk.shape[0]
    expand = lambda x: jnp.broadcast_to(x, (batch,) + x.shape[1:])  # noqa: E731
    sources = expand(source)
    source_params = jax.tree_util.tree_map(expand, source_params)
    bg = None
    if mode == "reconstruction":
        params = driving
        bg = nets.bg_predictor.apply(variables["bg_predictor"], sources, chunk)
    else:
        avd_fn = lambda s, d: nets.avd_network.apply(variables["avd_network"], s, d)  # noqa: E731
        params = animation.animation_params(mode, source_params, driving, initial, scale, avd_fn)
    gen = variables["generator"]
    motion = nets.generator.apply(gen, sources, params, source_params, bg, method=Generator.motion)
    out = {
        "prediction": nets.generator.apply(gen, sources, [expand(x) for x in levels], motion, method=Generator.decode)
    }
    if visual:
        out["deformed"] = warp(sources, motion["optical_flow"])
        if motion.get("occlusion_map") is not None:
            out["occlusion_map"] = motion["occlusion_map"]
        out["driving_shift"] = driving.shift
        if driving_full.heatmap is not None:
            out["driving_heatmap"] = driving_full.heatmap
    return out


def padded_chunks(frames: jax.Array, chunk_size: int):
    """(chunk, valid count) over (T, ...) frames, every chunk `chunk_size` long (the last padded
    by repeating its last frame), so that one compiled program serves any video length."""
    chunk_size = max(1, min(int(chunk_size), frames.shape[0]))
    for start in range(0, frames.shape[0], chunk_size):
        chunk = frames[start : start + chunk_size]
        valid = chunk.shape[0]
        if valid < chunk_size:
            chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], chunk_size - valid, axis=0)])
        yield chunk, valid


def check_animation_inputs(source_image, driving_frames, channels: int) -> tuple[jax.Array, jax.Array]:
    """(H, W, C) source and (T, H, W, C) driving frames as float32 arrays, or a ValueError saying what is wrong."""
    source_image = jnp.asarray(source_image, jnp.float32)
    driving_frames = jnp.asarray(driving_frames, jnp.float32)
    if source_image.ndim != 3 or driving_frames.ndim != 4:
        raise InputError(
            f"animate expects source_image (H, W, C) and driving_frames (T, H, W, C), got {source_image.shape} and {driving_frames.shape}"
        )
    if driving_frames.shape[0] == 0:
        raise InputError("animate needs at least one driving frame, got 0 frames")
    if driving_frames.shape[1:] != source_image.shape:
        raise InputError(
            f"driving frames {driving_frames.shape[1:]} must have the source image's shape {source_image.shape}"
        )
    if source_image.shape[-1] != channels:
        raise InputError(f"source_image has {source_image.shape[-1]} channels, the model expects {channels}")
    return source_image, driving_frames


def _as_batch(images: Any, name: str, channels: int) -> jax.Array:
    """`images` as a float32 (B, H, W, C) array with the model's channel count, or a ValueError."""
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4:
        raise InputError(f"{name} must be a (B, H, W, C) batch of images, got shape {images.shape}")
    if images.shape[-1] != channels:
        raise InputError(f"{name} has {images.shape[-1]} channels, the model expects {channels} (shape {images.shape})")
    return images
