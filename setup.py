"""colab-sd: a Stable Diffusion workstation in a Colab notebook."""
import re
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "colab_sd" / "_version.py").read_text()).group(1)

# Lower bounds that Colab's preinstalled packages already satisfy, so installing there upgrades nothing.
CORE = [
    "requests>=2.28",
    "tqdm>=4.64",
    "huggingface_hub>=0.20",
    "gdown>=5.1",
    "ipywidgets>=7.7,<9",
]
# torch is deliberately unpinned: Colab brings its own CUDA build and must keep it.
GENERATION = [
    "torch",
    "diffusers>=0.30",
    "transformers>=4.40",
    "accelerate>=0.30",
    "peft>=0.10",
    "safetensors>=0.4",
    "pillow>=9",
    "scipy>=1.10",  # the LMS sampler; Colab has it
    # Upscalers (ESRGAN, SwinIR, HAT, DAT…) recognised from their weights. Needs torchvision, which Colab has;
    # it declares no torch pin of its own beyond what Colab's torch satisfies.
    "spandrel>=0.4",
    "gguf>=0.10",  # GGUF transformer files (Flux, SD3.5, Z-Image); pure Python, no torch pin
]
# What a Colab or Kaggle runtime lacks of the generation stack (it has torch, torchvision, diffusers, transformers):
# the notebook installs `colab-sd[notebook]`, never `[generation]`, so the host's torch is left alone.
# bitsandbytes: 8/4-bit text encoders, without which the memory plan cannot fit Flux-class models on a T4
# (it asks torch<3,>=2.4: Colab's torch satisfies it, nothing is replaced).
NOTEBOOK = ["spandrel>=0.4", "gguf>=0.10", "ipycanvas>=0.13", "bitsandbytes>=0.45"]  # ipycanvas: painting masks
RAY = ["ray>=2.9"]  # `colab-sd batch --ray`: many machines; imported only when asked for
APP = ["jupyterlab>=4", "ipykernel>=6"]  # `colab-sd app`: the notebook app outside Colab
TEST = ["pytest>=7", "pytest-timeout>=2", "nbclient>=0.7", "nbformat>=5", "ipykernel>=6", "jupyterlab>=4", "playwright>=1.40"]

setup(
    name="colab-sd",
    version=VERSION,
    description="Turn a Google Colab notebook into a Stable Diffusion workstation: verified model downloads and inline generation.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # The bundled diffusers config folders are data-only packages: listing them (namespace packages) is what keeps
    # setuptools from warning about each one on every install.
    packages=find_namespace_packages(include=["colab_sd", "colab_sd.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={"colab_sd": ["generation/configs/**/*"]},
    install_requires=CORE,
    extras_require={"generation": GENERATION, "notebook": NOTEBOOK, "app": APP, "ray": RAY,
                    "test": GENERATION + NOTEBOOK + APP + RAY + TEST},
    entry_points={"console_scripts": ["colab-sd=colab_sd.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Environment :: GPU :: NVIDIA CUDA"],
)
