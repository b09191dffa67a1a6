"""Upscalers on the CPU: a real ESRGAN (RRDBNet) architecture with tiny random weights, written as .pth and
.safetensors into a library's `upscaler/`, loaded by spandrel, run in tiles; pickles checked before loading."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import colab_sd
from colab_sd.errors import InputError, NotFoundError
from colab_sd.generation import tiles, upscalers
from colab_sd.generation.upscalers import (LATENT_MODES, load_upscaler, resolve_upscaler, upscale_image,
                                           upscale_latents, upscaler_names)

pytestmark = pytest.mark.timeout(120)


def tiny_esrgan_state(scale: int = 4, seed: int = 0) -> dict:
    """The state dict of spandrel's ESRGAN (RRDBNet, old-arch keys) with 8 filters and one block."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return ESRGAN(num_filters=8, num_blocks=1, scale=scale).state_dict()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    folder = root / "upscaler"
    folder.mkdir()
    state = tiny_esrgan_state()
    torch.save(state, folder / "4x-tiny-esrgan.pth")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "4x-tiny-esrgan-st.safetensors"))
    torch.save({"params_ema": tiny_esrgan_state(scale=2, seed=1)}, folder / "2x-tiny-basicsr.pth")
    return root


def picture(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_library_upscalers_are_listed_after_the_builtins(library):
    names = upscaler_names(library)
    assert names[:6] == list(LATENT_MODES)
    assert names[6:9] == ["None", "Lanczos", "Nearest"]
    assert {"4x-tiny-esrgan", "4x-tiny-esrgan-st", "2x-tiny-basicsr"} <= set(names[9:])
    assert upscaler_names(library, latent=False)[0] == "None"


def test_pth_and_safetensors_load_as_the_same_esrgan(library):
    a = load_upscaler(resolve_upscaler("4x-tiny-esrgan", library)[1])
    assert (a.architecture.name, a.scale) == ("ESRGAN", 4)
    b = load_upscaler(resolve_upscaler("4x-tiny-esrgan-st.safetensors", library)[1])
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(a(x), b(x))
    wrapped = load_upscaler(resolve_upscaler("2x-tiny-basicsr", library)[1])  # basicsr's {"params_ema": …}
    assert wrapped.scale == 2


def test_tiled_equals_untiled_within_tolerance(library):
    model = load_upscaler(resolve_upscaler("4x-tiny-esrgan", library)[1])
    x = torch.rand(1, 3, 72, 56, generator=torch.Generator().manual_seed(3))
    whole = tiles.run_tiled(model, x, 4, 0, 16)
    tiled = tiles.run_tiled(model, x, 4, 32, 16)
    assert whole.shape == tiled.shape == (1, 3, 288, 224)
    assert tiles.tile_starts(72, 32, 16) == [0, 13, 27, 40] and tiles.tile_starts(56, 32, 16) == [0, 12, 24]
    assert float(whole.std()) > 0.01  # a picture, not a clamped blank
    assert float((whole - tiled).abs().max()) < 0.01
    assert float((whole - tiled).abs().mean()) < 1e-3


def test_upscale_image_tiles_and_reaches_the_exact_size(library):
    image = picture(48, 40)
    out = upscale_image(image, "4x-tiny-esrgan", 4, models_dir=library, tile=32)
    whole = upscale_image(image, "4x-tiny-esrgan", 4, models_dir=library, tile=0)
    assert out.size == whole.size == (192, 160)
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(whole, dtype=int))
    assert diff.max() <= 3 and diff.mean() < 0.3
    # 3x with a 4x model: one model pass, then Lanczos down; 6x with a 2x model: three passes (A1111's cap)
    assert upscale_image(image, "4x-tiny-esrgan", 3, models_dir=library).size == (144, 120)
    assert upscale_image(image, "2x-tiny-basicsr", 6, models_dir=library).size == (288, 240)


def test_tile_shrinks_after_out_of_memory(library):
    model = load_upscaler(resolve_upscaler("4x-tiny-esrgan", library)[1])
    seen = []

    def small_gpu(t):  # a device that has room for 16 px tiles only
        seen.append(t.shape[-1])
        if max(t.shape[-2:]) > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(t)

    told = []
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    out = tiles.run_adaptive(small_gpu, x, 4, 0, 8, minimum=12, on_smaller=told.append)
    assert told == [20, 12]  # whole image (40) → 20 → 12, the floor
    assert out.shape == (1, 3, 160, 160)
    assert float((out - model(x)).abs().max()) < 0.02
    with pytest.raises(torch.cuda.OutOfMemoryError):
        tiles.run_adaptive(small_gpu, x, 4, 40, 8, minimum=32)


def test_a_booby_trapped_pth_is_refused_before_unpickling(library, tmp_path, monkeypatch):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    trap = library / "upscaler" / "4x-trap.pth"
    torch.save({"model.0.weight": torch.zeros(1), "x": Payload()}, trap)
    import spandrel

    def never(*args, **kwargs):
        raise AssertionError("spandrel was asked to load a booby-trapped file")

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", never)
    monkeypatch.setattr(torch, "load", never)
    monkeypatch.setattr(pickle, "load", never)
    with pytest.raises(InputError, match=r"4x-trap\.pth would run code when loaded \(it imports .*system"):
        upscale_image(picture(), "4x-trap", 2, models_dir=library)
    assert not marker.exists()
    trap.unlink()


def test_refused_and_damaged_files_get_one_line_naming_them(library, tmp_path):
    folder = tmp_path / "upscaler"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(4, 4)}, str(folder / "not-sr.safetensors"))
    (folder / "broken.pth").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(InputError, match=r"^not-sr\.safetensors: spandrel does not recognise") as err:
        upscale_image(picture(), "not-sr", 2, models_dir=tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"^broken\.pth is not a readable torch file"):
        upscale_image(picture(), "broken", 2, models_dir=tmp_path)
    with pytest.raises(NotFoundError, match="upscaler 'nope' not found: use one of .*Lanczos"):
        resolve_upscaler("nope", tmp_path)
    with pytest.raises(InputError, match="works only inside hires fix"):
        upscale_image(picture(), "Latent", 2)


def test_pil_filters_and_latent_modes():
    image = picture(40, 24)
    assert upscale_image(image, "Lanczos", 2).size == (80, 48)
    assert upscale_image(image, "lanczos", resize_to=(64, 64)).size == (64, 64)
    nearest = upscale_image(image, "Nearest", 2)
    assert np.array_equal(np.asarray(nearest)[::2, ::2], np.asarray(image))
    latents = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    for name in LATENT_MODES:
        out = upscale_latents(latents, name, (16, 24))
        assert out.shape == (2, 4, 16, 24), name
    assert torch.equal(upscale_latents(latents, "Latent (nearest)", (16, 24))[:, :, ::2, ::2], latents)


def test_upscale_api_saves_pngs_with_the_source_parameters(library, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    source = tmp_path / "cat.png"
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, Seed: 1, Size: 48x40")
    picture().save(source, pnginfo=info)
    result = colab_sd.upscale([source], "4x-tiny-esrgan", scale=2, models_dir=library, outputs_dir=tmp_path / "out")
    assert result.upscaler == "4x-tiny-esrgan"
    [path] = result.paths
    assert path.parent == tmp_path / "out" / "upscaled" and path.name == "cat-4x-tiny-esrgan-96x80.png"
    with Image.open(path) as img:
        assert img.size == (96, 80)
        assert img.text["parameters"].startswith("a cat\nSteps: 2")
        assert img.text["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: 4x-tiny-esrgan"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match=r"^image bad\.png is not an image PIL can read"):
        colab_sd.upscale([bad], "Lanczos", models_dir=library, outputs_dir=tmp_path / "out")
    with pytest.raises(InputError, match="at most 16, not 256"):
        colab_sd.upscale([source], "Lanczos", scale=16 * 16, models_dir=library)
    with pytest.raises(InputError, match=r"^40000x40000 is over the 67 MP limit"):
        colab_sd.upscale([source], "Lanczos", resize_to=(40000, 40000), models_dir=library)


def test_cli_upscale(library, tmp_path):
    source = tmp_path / "dog.png"
    picture(32, 32).save(source)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "colab_sd.cli", "upscale", str(source), "--upscaler", "4x-tiny-esrgan",
           "--dir", str(library), "--out", str(tmp_path / "out"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    [path] = last["paths"]
    with Image.open(path) as img:
        assert img.size == (128, 128)  # the model's own 4x when no --scale is given
    bad = subprocess.run(cmd[:5] + ["--upscaler", "nope", "--dir", str(library)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("colab-sd: error: upscaler 'nope' not found")
    assert len(bad.stderr.strip().splitlines()) == 1
