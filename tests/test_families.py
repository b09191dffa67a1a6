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
    tiny_families.offline_library(monkeypatch, zimage[0], tmp_path / "outputs")


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
    # the plan counts the real 4B encoder (16 GB in fp32 on a CPU): give it a machine where that fits
    from colab_sd.generation import memory_plan

    monkeypatch.setattr(memory_plan.Machine, "detect", classmethod(lambda cls, device: cls("CPU", 0, 64 * 10**9)))
    with pytest.raises(Exception) as err:
        colab_sd.generate(model="z", **SMALL)
    text = str(err.value)
    assert "Qwen3-4B text encoder" in text and "GB" in text and "Comfy-Org/z_image_turbo" in text
    assert "\n" not in text


def test_missing_components_are_fetched_from_the_hub_into_the_library(zimage, tmp_path, monkeypatch, hub):
    """The encoder and VAE come from their public repo (the fake Hub on 127.0.0.1) through colab_sd's
    downloader, announced with their sizes first, into text_encoder/ and vae/, where the next run finds them."""
    import shutil

    import huggingface_hub.constants as hf_constants

    from colab_sd.events import Progress

    _, paths, _ = zimage
    hub.add_repo("Comfy-Org/z_image_turbo", {
        "split_files/text_encoders/qwen_3_4b.safetensors": paths["text_encoder"].read_bytes(),
        "split_files/vae/ae.safetensors": paths["vae"].read_bytes()})
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    lib = tmp_path / "lib"
    (lib / "checkpoint").mkdir(parents=True)
    shutil.copyfile(paths["single"], lib / "checkpoint" / "z.safetensors")
    monkeypatch.setenv("COLAB_SD_HOME", str(lib))
    events = []
    result = colab_sd.generate(model="z", on_event=events.append, **SMALL)
    assert result.images[0].size == (64, 64)
    announce = next(i for i, e in enumerate(events) if isinstance(e, Info) and e.message.startswith("fetching "))
    first_progress = next(i for i, e in enumerate(events) if isinstance(e, Progress))
    assert announce < first_progress
    assert "Qwen3-4B text encoder" in events[announce].message and "GB" in events[announce].message
    assert (lib / "text_encoder" / "qwen_3_4b.safetensors").is_file() and (lib / "vae" / "ae.safetensors").is_file()
    hits = len(hub.hits("/Comfy-Org/z_image_turbo/resolve/"))
    CACHE.release()
    colab_sd.generate(model="z", **SMALL)  # found in the library now: nothing fetched again
    assert len(hub.hits("/Comfy-Org/z_image_turbo/resolve/")) == hits


def test_a_nan_image_is_reported_and_never_saved(zimage, tmp_path):
    """What fp16 overflow does on a T4: NaN latents. The decode guard raises before any PNG is written."""
    import torch

    from colab_sd.generation.families.guards import NaNImageError

    colab_sd.generate(model="tiny-zimage", **SMALL)
    pipe = CACHE.entry.pipe
    layer = pipe.transformer.all_final_layer["2-1"].linear
    saved = layer.weight.detach().clone()
    try:
        with torch.no_grad():
            layer.weight.fill_(float("nan"))
        outputs = tmp_path / "nan-outputs"
        with pytest.raises(NaNImageError) as err:
            colab_sd.generate(model="tiny-zimage", outputs_dir=str(outputs), **SMALL)
        assert "NaN image" in str(err.value) and "nothing was saved" in str(err.value) and "\n" not in str(err.value)
        assert not outputs.exists() or not list(outputs.rglob("*.png"))
    finally:
        with torch.no_grad():
            layer.weight.copy_(saved)


def test_fp16_clamp_hooks_turn_overflow_into_finite_values():
    import torch

    from colab_sd.generation.families.guards import clamp_fp16

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.feed_forward = torch.nn.Identity()

        def forward(self, x):
            return self.feed_forward(x) * 2

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([Block()])

        def forward(self, x):
            return self.layers[0](x)

    net = Net()
    assert clamp_fp16(net) == 2  # the block and its feed-forward
    x = torch.tensor([60000.0, float("nan"), -1.0], dtype=torch.float16)
    out = net(x)
    assert torch.isfinite(out).all() and out[0] == 65504 and out[1] == 0 and out[2] == -2


def test_cli_generate_with_a_gguf_family_model(zimage, tmp_path, capsys):
    from pathlib import Path

    from colab_sd.cli import main
    from colab_sd.generation import read_png_parameters

    out = tmp_path / "cli-out"
    code = main(["generate", "--model", "tiny-zimage-Q8_0.gguf", "--prompt", "a cat", "--steps", "2", "--width",
                 "64", "--height", "64", "--seed", "5", "--dir", str(zimage[0]), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    paths = [Path(line) for line in captured.out.split()]
    assert len(paths) == 1 and paths[0].is_file()
    fields = parse_parameters(read_png_parameters(paths[0]))
    assert fields["Model"] == "tiny-zimage-Q8_0" and fields["Sampler"] == "Euler" and fields["CFG scale"] == "0"
