"""Transformer families end to end on the CPU, offline, through `colab_sd.generate` (the path a user takes):
tiny random Z-Image (first; more families in test_families_more.py) as a transformer-only single file in the
released layout, as a GGUF file written with the `gguf` package, and as a diffusers folder; its text encoder and
VAE found in the library (text_encoder/, vae/) by their headers.
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.events import Info  # noqa: E402
from colab_sd.generation import parse_parameters  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SMALL = dict(steps=2, width=64, height=64, seed=7, prompt="a photo of a cat")


@pytest.fixture(scope="module")
def zimage(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    pipe = tiny_families.build_zimage()
    paths = tiny_families.save_zimage(pipe, root)
    yield root, paths, pipe
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(zimage, monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    root = zimage[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(root / "_configs"))
    monkeypatch.setenv("COLAB_SD_HOME", str(root))
    monkeypatch.setenv("COLAB_SD_OUTPUTS", str(tmp_path / "outputs"))


def reference(pipe, **kw):
    """The tiny pipeline called directly by diffusers with the same seed: what colab_sd must reproduce."""
    import torch

    out = pipe(prompt=SMALL["prompt"], num_inference_steps=2, guidance_scale=0.0, width=64, height=64,
               generator=torch.Generator("cpu").manual_seed(SMALL["seed"]), max_sequence_length=512,
               output_type="np", **kw)
    return (out.images[0] * 255).round()


@pytest.mark.parametrize("model", ["tiny-zimage", "tiny-zimage-Q8_0.gguf", "tiny-zimage-diffusers"])
def test_zimage_generates_like_diffusers(zimage, model):
    root, paths, pipe = zimage
    events = []
    result = colab_sd.generate(model=model, on_event=events.append, **SMALL)
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.shape == (64, 64, 3)
    assert result.family == "zimage"
    # bf16 single file and Q8_0 GGUF are close to the fp32 original, the diffusers folder is exact
    tolerance = {"tiny-zimage-diffusers": 0.5, "tiny-zimage": 3.0, "tiny-zimage-Q8_0.gguf": 3.0}[model]
    assert np.abs(image - reference(pipe)).mean() < tolerance
    messages = [e.message for e in events if isinstance(e, Info)]
    assert any(m.startswith("memory plan: Z-Image Turbo") and "on the CPU" in m for m in messages), messages
    if model != "tiny-zimage-diffusers":
        assert any("tiny-qwen3.safetensors from the library" in m for m in messages)
    assert result.paths and result.paths[0].is_file()


def test_zimage_gguf_keeps_weights_packed(zimage):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    colab_sd.generate(model="tiny-zimage-Q8_0.gguf", **SMALL)
    packed = [n for n, p in CACHE.entry.pipe.transformer.named_parameters() if isinstance(p, GGUFParameter)]
    assert packed and any("attention.to_q" in n for n in packed)


def test_zimage_defaults_and_infotext(zimage):
    result = colab_sd.generate(model="tiny-zimage", prompt="a red house", width=64, height=64, seed=3,
                               negative_prompt="blurry")
    assert result.request.steps == 9 and result.request.cfg == 0.0  # Z-Image Turbo: 9 steps, no CFG
    params = parse_parameters(result.parameters[0])
    assert params["Steps"] == "9" and params["Sampler"] == "Euler" and params["Shift"] == "3"


def test_zimage_variant_from_sidecar(zimage, tmp_path):
    import shutil

    from colab_sd.library import write_sidecar

    root = zimage[0]
    base = root / "checkpoint" / "my-finetune.safetensors"
    shutil.copyfile(zimage[1]["single"], base)
    write_sidecar(base, {"baseModel": "ZImageBase"})
    events = []
    result = colab_sd.generate(model="my-finetune", on_event=events.append, **SMALL)
    assert any("Z-Image Base" in e.message for e in events if isinstance(e, Info))
    assert parse_parameters(result.parameters[0])["Shift"] == "6"  # Base: shift 6
    base.unlink()


def test_missing_component_is_announced_and_refused_offline(zimage, tmp_path, monkeypatch):
    """A library without the Qwen3 encoder: the message names it, its size and source before anything loads."""
    import shutil

    lib = tmp_path / "lib"
    (lib / "checkpoint").mkdir(parents=True)
    shutil.copyfile(zimage[1]["single"], lib / "checkpoint" / "z.safetensors")
    monkeypatch.setenv("COLAB_SD_HOME", str(lib))
    with pytest.raises(Exception) as err:
        colab_sd.generate(model="z", **SMALL)
    text = str(err.value)
    assert "Qwen3-4B text encoder" in text and "GB" in text and "Comfy-Org/z_image_turbo" in text
    assert "\n" not in text
