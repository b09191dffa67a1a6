"""Flux dev / schnell, Chroma, SD3 and Flux.2 Klein end to end on the CPU through `colab_sd.generate`, offline:
each tiny family as a transformer-only file (diffusers-layout keys: the Flux and Chroma converters hard-wire the
real widths), as a Q8_0 GGUF and as a diffusers folder, its encoders and VAE found in one shared library
(text_encoder/, vae/) by architecture and width, as a user's would be. The image must be what diffusers itself
makes with the same tiny pipeline and seed.
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
from colab_sd.events import Info  # noqa: E402
from colab_sd.generation import parse_parameters  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SEED = 11
# family key → (library stem, expected family, call the direct reference gets, tolerance per format)
CASES = {
    "flux": ("tiny-flux-dev", "flux", dict(guidance_scale=3.5, max_sequence_length=512)),
    "schnell": ("tiny-flux-schnell", "flux", dict(guidance_scale=0.0, max_sequence_length=256)),
    "chroma": ("tiny-chroma", "chroma", dict(guidance_scale=5.0, negative_prompt="blurry", max_sequence_length=512)),
    "sd3": ("tiny-sd3", "sd3", dict(guidance_scale=7.0, negative_prompt="blurry", max_sequence_length=256)),
    "klein": ("tiny-klein", "flux2", dict(guidance_scale=1.0, max_sequence_length=512)),
}
TOLERANCE = {"diffusers": 0.6, "single": 3.0, "gguf": 4.0}
# Chroma's CFG 5 on random tiny weights amplifies the CPU's run-to-run float noise: the tiny pipeline called twice
# by diffusers itself differs by ~2.3 (mean, 0-255), so its images are compared within that noise.
NOISY = {"chroma": 6.0}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    built = tiny_families.build_library(root)
    yield root, built
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(library, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, library[0], tmp_path / "outputs")


def direct(pipe, **kw):
    import torch

    out = pipe(prompt="a photo of a dog", num_inference_steps=2, width=64, height=64, output_type="np",
               generator=torch.Generator("cpu").manual_seed(SEED), **kw)
    return (out.images[0] * 255).round()


def model_name(stem: str, fmt: str) -> str:
    return {"single": stem, "gguf": f"{stem}-Q8_0.gguf", "diffusers": f"{stem}-diffusers"}[fmt]


@pytest.mark.parametrize("fmt", ["single", "gguf", "diffusers"])
@pytest.mark.parametrize("key", list(CASES))
def test_family_generates_like_diffusers(library, key, fmt):
    root, built = library
    stem, family, reference_call = CASES[key]
    negative = reference_call.get("negative_prompt", "")
    events = []
    result = colab_sd.generate(model=model_name(stem, fmt), prompt="a photo of a dog", negative_prompt=negative,
                               steps=2, width=64, height=64, seed=SEED, on_event=events.append)
    assert result.family == family
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.shape == (64, 64, 3) and image.std() > 1.0  # a picture, not a flat or black square
    assert np.abs(image - direct(built["pipes"][key], **reference_call)).mean() < NOISY.get(key, TOLERANCE[fmt])
    assert any(isinstance(e, Info) and e.message.startswith("memory plan:") for e in events)


def test_flux_components_come_from_the_library_by_width(library):
    events = []
    colab_sd.generate(model="tiny-sd3", prompt="a cat", steps=2, width=64, height=64, seed=1, on_event=events.append)
    said = " ".join(e.message for e in events if isinstance(e, Info))
    # CLIP-L (32 wide) and CLIP-G (48 wide) have the same keys: the width told them apart; the SD3 VAE by its name
    assert "CLIP-L text encoder (fp32): tiny-clip_l.safetensors" in said  # the file's own precision
    assert "CLIP-G text encoder (fp32): tiny-clip_g.safetensors" in said
    assert "SD3 VAE (fp32): tiny-sd3-vae.safetensors" in said


def test_flux_dev_defaults_and_forge_infotext(library):
    result = colab_sd.generate(model="tiny-flux-dev", prompt="a cat", width=64, height=64, seed=2, steps=2)
    params = parse_parameters(result.parameters[0])
    assert result.request.cfg == 3.5
    assert params["Distilled CFG Scale"] == "3.5" and params["CFG scale"] == "1" and params["Sampler"] == "Euler"


def test_schnell_defaults_to_four_steps(library):
    result = colab_sd.generate(model="tiny-flux-schnell", prompt="a cat", width=64, height=64, seed=2)
    assert result.request.steps == 4 and result.request.cfg == 0.0
