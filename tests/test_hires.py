"""Hires fix on the CPU with the tiny SD1 / SDXL models: 64² → 128², A1111's infotext keys, the same seed giving
the same two-pass image, no model reload, and the pure size / step maths checked against A1111's numbers."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

import colab_sd  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.generation import hires, load_count, parse_parameters  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"), pytest.mark.usefixtures("offline")]

SMALL = dict(steps=2, width=64, height=64, seed=77, save=False, prompt="a photo of a cat")


def test_hires_turns_64_into_128_with_a1111_infotext(tmp_path):
    result = colab_sd.generate(**{**SMALL, "save": True}, model="tiny-sd1", hires_scale=2)
    image = result.images[0]
    assert image.size == (128, 128)
    params = parse_parameters(result.parameters[0])
    assert params["Size"] == "64x64"  # A1111 keeps the first pass's size
    assert params["Hires upscale"] == "2" and params["Hires upscaler"] == "Latent"
    assert params["Denoising strength"] == "0.7"
    assert "Hires steps" not in params and "Hires sampler" not in params
    from colab_sd.generation import read_png_parameters

    assert read_png_parameters(result.paths[0]) == result.parameters[0]


def test_same_seed_same_two_pass_image_and_no_reload():
    first = colab_sd.generate(**SMALL, model="tiny-sd1", hires_scale=1.5, hires_upscaler="Latent (bicubic)",
                              hires_steps=3, hires_denoise=0.5)
    loads = load_count()
    again = colab_sd.generate(**SMALL, model="tiny-sd1", hires_scale=1.5, hires_upscaler="Latent (bicubic)",
                              hires_steps=3, hires_denoise=0.5)
    assert load_count() == loads and not again.loaded  # the second pass reuses the loaded components
    assert first.images[0].size == (96, 96)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    other = colab_sd.generate(**{**SMALL, "seed": 78}, model="tiny-sd1", hires_scale=1.5,
                              hires_upscaler="Latent (bicubic)", hires_steps=3, hires_denoise=0.5)
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    params = parse_parameters(first.parameters[0])
    assert params["Hires steps"] == "3" and params["Hires upscaler"] == "Latent (bicubic)"
    assert params["Denoising strength"] == "0.5"


def test_sdxl_hires_with_lanczos_resize_to_sampler_and_prompt():
    seen = []
    result = colab_sd.generate(**SMALL, model="tiny-sdxl", hires_resize_width=128, hires_resize_height=96,
                               hires_upscaler="Lanczos", hires_sampler="Euler", hires_prompt="a photo of a dog",
                               hires_steps=2, on_event=seen.append)
    assert result.images[0].size == (128, 96)
    params = parse_parameters(result.parameters[0])
    assert "Hires resize: 128x96" in result.parameters[0]
    assert "Hires upscale" not in params
    assert params["Hires sampler"] == "Euler" and params["Hires prompt"] == "a photo of a dog"
    steps = [e for e in seen if getattr(e, "status", "") == "progress"]
    assert [e.step for e in steps][-2:] == [1, 2]  # the hires pass ran its 2 steps


def test_hires_with_a_library_upscaler(library):
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    state = ESRGAN(num_filters=8, num_blocks=1, scale=2).state_dict()
    (library / "upscaler").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(library / "upscaler" / "2x-tiny.safetensors"))
    result = colab_sd.generate(**SMALL, model="tiny-sd1", hires_upscaler="2x-tiny")
    assert result.images[0].size == (128, 128)
    assert parse_parameters(result.parameters[0])["Hires upscaler"] == "2x-tiny"


def test_bad_hires_settings_are_one_line_errors_before_loading():
    with pytest.raises(InputError, match="hires denoising strength must be above 0"):
        colab_sd.generate(**SMALL, model="tiny-sd1", hires_scale=2, hires_denoise=0)
    with pytest.raises(InputError, match=r"hires size 8192x8192 is outside 64–4096"):
        colab_sd.generate(**{**SMALL, "width": 1024, "height": 1024}, model="tiny-sd1", hires_scale=8)
    with pytest.raises(InputError, match="hires resize width must be between 0 and 4096, not 8192"):
        colab_sd.generate(**SMALL, model="tiny-sd1", hires_resize_width=8192)
    with pytest.raises(Exception, match="upscaler 'nope' not found"):
        colab_sd.generate(**SMALL, model="tiny-sd1", hires_upscaler="nope")
    with pytest.raises(InputError, match="hires scale must be between 1 and 8"):
        colab_sd.generate(**SMALL, model="tiny-sd1", hires_scale=0.5)


def test_size_and_step_maths_match_a1111():
    # reference §3 / conformance 10: 512×768 by 2 → 1024×1536; resize to 1024² → upscale 1024×1536, crop 32+32
    assert hires.target(512, 768, 2.0, 0, 0) == ((1024, 1536), (1024, 1536))
    assert hires.target(512, 768, 2.0, 1024, 1024) == ((1024, 1536), (1024, 1024))
    assert hires.target(512, 768, 2.0, 1024, 0) == ((1024, 1536), (1024, 1536))
    assert hires.target(512, 768, 2.0, 0, 1024) == ((680, 1024), (680, 1024))
    latents = torch.zeros(1, 4, 192, 128)
    latents[:, :, 32:160] = 1
    cropped = hires.crop_latents(latents, (1024, 1536), (1024, 1024))
    assert cropped.shape == (1, 4, 128, 128) and bool((cropped == 1).all())
    # conformance 9: hires 20 steps at d 0.7 → the last 20 of a 28-step schedule; img2img 20 at 0.75 → 16 steps
    total, strength = hires.steps_and_strength(20, 0.7)
    assert total == 28 and int(total * strength) == 20
    total, strength = hires.img2img_steps(20, 0.75)
    assert total == 20 and int(total * strength) == 16


def test_cli_hires_scale_alone_turns_hires_on(library, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "COLAB_SD_CONFIGS": str(library / "_configs"),
           "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "colab_sd.cli", "generate", "--model", "tiny-sd1", "--prompt", "a cat", "--steps",
           "2", "--width", "64", "--height", "64", "--seed", "3", "--hires-scale", "2", "--dir", str(library),
           "--out", str(tmp_path), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    [path] = [e["path"] for e in events if e.get("status") == "completed"]
    from PIL import Image

    with Image.open(path) as img:
        assert img.size == (128, 128)
        text = img.text["parameters"]
    assert "Hires upscale: 2, Hires upscaler: Latent" in text and "Denoising strength: 0.7" in text
    bad = subprocess.run(cmd[:-5] + ["--hires-denoise", "0", "--dir", str(library)], capture_output=True, text=True,
                         env=env, timeout=240)
    assert bad.returncode == 1 and "hires denoising strength must be above 0" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
