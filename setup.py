"""mraa-jax: Motion Representations for Articulated Animation in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name="mraa-jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of MRAA (CVPR 2021), loading the original checkpoints.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mraa_jax", "mraa_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax",
        "orbax-checkpoint",
        "chex",
        "ml-collections",
        "numpy",
        "imageio",
        "imageio-ffmpeg",  # mp4/mov reading and writing
        "pillow",
        "pyyaml",
        "scipy",
        "tqdm",
        "matplotlib",
        "tensorboardX",  # TensorBoard events without TensorFlow
        "tensorflow-datasets",  # array_record datasets; TensorFlow itself is not needed
        "grain",  # input pipelines
        "absl-py",
        "dm-pix",  # PSNR and SSIM
    ],
    extras_require={
        # torch is only needed to read the original's .pth checkpoints.
        "convert": ["torch==2.13.0"],
        "test": ["pytest", "pytest-timeout", "nbclient", "nbformat", "ipykernel"],
    },
)
