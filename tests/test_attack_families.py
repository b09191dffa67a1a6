"""Issue 11 from the outside: inputs a user brings that the family builders did not plan for (renamed and
truncated files, sizes, A1111 prompt syntax and SD-only settings on a transformer family, hires fix per family).
Each test is a reproduction of something that went wrong; tiny random models, 2 steps, 64 px, offline.
"""
from __future__ import annotations

import os
import shutil

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
from colab_sd.errors import ColabSDError, InputError  # noqa: E402
from colab_sd.events import Info  # noqa: E402
from colab_sd.generation import parse_parameters  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SMALL = dict(steps=2, width=64, height=64, seed=3, prompt="a cat", save=False)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack")
    tiny_families.build_library(root)
    yield root
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(library, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, library, tmp_path / "outputs")


def infos(**kw) -> tuple:
    events = []
    result = colab_sd.generate(on_event=events.append, **{**SMALL, **kw})
    return result, [e.message for e in events if isinstance(e, Info)]


def cli_error(capsys, *args) -> str:
    """`colab-sd generate` in this process: the exit code is 1 and stderr is one line (no traceback)."""
    from colab_sd.cli import main

    code = main(["generate", "--prompt", "a cat", "--steps", "2", "--width", "64", "--height", "64", *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_flux_safetensors_renamed_ckpt_says_rename(library, capsys):
    """A Flux transformer saved as .ckpt (the probe reads it as safetensors, diffusers picks torch.load by the
    extension): was an OSError traceback from diffusers' load_state_dict."""
    shutil.copy(library / "checkpoint" / "tiny-flux-dev.safetensors", library / "checkpoint" / "flux-renamed.ckpt")
    try:
        with pytest.raises(InputError, match=r"flux-renamed\.ckpt is a safetensors file with a \.ckpt extension: "
                                             r"rename it to flux-renamed\.safetensors"):
            colab_sd.generate(model="flux-renamed.ckpt", **SMALL)
        assert "rename it to flux-renamed.safetensors" in cli_error(capsys, "--model", "flux-renamed.ckpt")
    finally:
        (library / "checkpoint" / "flux-renamed.ckpt").unlink()


def test_truncated_gguf_is_one_line(library, tmp_path, capsys):
    """A GGUF cut in half by a broken download: its header still reads (the probe says Flux dev GGUF), the tensors
    do not; was an OSError traceback from diffusers."""
    data = (library / "checkpoint" / "tiny-flux-dev-Q8_0.gguf").read_bytes()
    cut = tmp_path / "flux-cut-Q8_0.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"flux-cut-Q8_0\.gguf is truncated: .*download it again"):
        colab_sd.generate(model=str(cut), **SMALL)
    assert "download it again" in cli_error(capsys, "--model", str(cut))


def test_truncated_safetensors_says_truncated(library, tmp_path):
    """Was 'is not a checkpoint (it looks like unknown file (unknown))': the probe knew it was truncated."""
    data = (library / "checkpoint" / "tiny-flux-dev.safetensors").read_bytes()
    cut = tmp_path / "flux-cut.safetensors"
    cut.write_bytes(data[:-1000])
    with pytest.raises(InputError, match=r"flux-cut\.safetensors is truncated: .*download it again"):
        colab_sd.generate(model=str(cut), **SMALL)


def test_size_hint_offers_only_sizes_that_pass(library):
    """width 50 said 'use 64 or 56', and 56 then failed with 'must be at least 64'."""
    with pytest.raises(InputError, match=r"^width 50 is not a multiple of 8: use 64$"):
        colab_sd.generate(model="tiny-flux-dev.safetensors", **{**SMALL, "width": 50})
    with pytest.raises(InputError, match=r"^width 500 is not a multiple of 8: use 496 or 504$"):
        colab_sd.generate(model="tiny-flux-dev.safetensors", **{**SMALL, "width": 500})


def test_sd_only_settings_on_a_family_are_said_and_not_recorded(library):
    """SD3 with sampler DDIM and clip skip 2: the sampler was replaced by Euler without a word, and the infotext
    said 'Clip skip: 2' while the clip-skip note said it was ignored."""
    result, messages = infos(model="tiny-sd3.safetensors", sampler="DDIM", clip_skip=2)
    assert any("sampler DDIM" in m and "ignored" in m for m in messages), messages
    assert any("clip skip does not apply to SD3" in m for m in messages), messages
    fields = parse_parameters(result.parameters[0])
    assert fields["Sampler"] == "Euler" and "Clip skip" not in fields, fields


def test_a_sampler_schedule_pair_only_sd_can_refuse_is_ignored_on_a_family(library):
    """'Euler a' + 'Karras' (pasted from an A1111 SDXL recipe) on Flux: neither applies, so it runs and says so
    (on an SD model the same pair is still refused before loading: test_generation's validation cases)."""
    result, messages = infos(model="tiny-flux-dev.safetensors", sampler="Euler a", schedule="Karras")
    assert result.images and any("ignored" in m and "Euler a" in m for m in messages), messages


def test_a_negative_prompt_a_family_ignores_is_not_recorded(library):
    """Flux dev takes no negative prompt: the note says it is ignored, and the infotext must not claim one was used
    (seen in the browser test: a negative left in the hidden panel field was written under a Z-Image picture)."""
    result, messages = infos(model="tiny-flux-dev.safetensors", negative_prompt="blurry")
    assert any("uses no negative prompt" in m for m in messages), messages
    assert "Negative prompt" not in result.parameters[0]
    result, _ = infos(model="tiny-sd3.safetensors", negative_prompt="blurry")  # SD3 uses it: recorded
    assert parse_parameters(result.parameters[0])["negative_prompt"] == "blurry"


def test_a1111_prompt_syntax_on_a_family_is_said(library):
    """'(red:1.5) … BREAK …' on Flux goes to T5 / CLIP as plain text: the user is told, once; a plain prompt with
    ordinary parentheses gets no note."""
    _, messages = infos(model="tiny-flux-dev.safetensors", prompt="a (red:1.5) cat BREAK [dog:cat:0.5]")
    assert sum("reads the prompt as plain text" in m for m in messages) == 1, messages
    _, messages = infos(model="tiny-flux-dev.safetensors", prompt="a cat (wearing a hat), 35mm photo")
    assert not any("plain text" in m for m in messages), messages


def test_chroma_hires_fix_with_the_default_latent_upscaler(library):
    """Was 'RuntimeError: The size of tensor a (64) must match the size of tensor b (128)': diffusers'
    ChromaImg2ImgPipeline builds its VaeImageProcessor without vae_latent_channels, so the upscaled 16-channel
    latents were resized as pixels (fixed in families/second.py by its owner)."""
    result = colab_sd.generate(model="tiny-chroma.safetensors", hires_scale=2, hires_steps=2, **SMALL)
    assert result.images[0].size == (128, 128)



def test_variant_choice_and_a_contradicting_sidecar_are_said(library):
    """README: 'the choice and why are in the load messages' — the why never reached an event; a sidecar naming
    another family (Flux.1 D beside a Z-Image file) was ignored without a word; the default's reason listed
    'Z-Image Turbo / Z-Image Base / Z-Image Turbo'."""
    import json

    model = library / "checkpoint" / "zi-side.safetensors"
    shutil.copy(library / "checkpoint" / "tiny-zimage.safetensors", model)
    sidecar = library / "checkpoint" / "zi-side.safetensors.json"
    try:
        sidecar.write_text(json.dumps({"base_model": "ZImageBase"}))
        _, messages = infos(model="zi-side.safetensors")
        assert any(m.startswith("loading zi-side") and "Z-Image Base: CivitAI baseModel 'ZImageBase' in the sidecar"
                   in m for m in messages), messages
        sidecar.write_text(json.dumps({"base_model": "Flux.1 D"}))
        CACHE.release()
        _, messages = infos(model="zi-side.safetensors")
        [line] = [m for m in messages if m.startswith("loading zi-side")]
        assert "shapes cannot tell Z-Image Turbo / Z-Image Base apart" in line, line
        assert "its sidecar says baseModel 'Flux.1 D', but the file's weights are Z-Image Turbo" in line, line
    finally:
        model.unlink()
        sidecar.unlink(missing_ok=True)


def test_a_flux_image_read_back_is_the_same_picture_without_ignored_notes(library, tmp_path, capsys):
    """generate --from a Flux dev image (Forge's 'Sampler: Euler, Schedule type: Simple'): same pixels, and the
    sampler note is not raised for the Euler the family itself runs."""
    import numpy as np
    from PIL import Image

    from colab_sd.cli import main

    made = colab_sd.generate(model="tiny-flux-dev.safetensors", **{**SMALL, "save": True, "cfg": 2.5})
    capsys.readouterr()
    assert main(["generate", "--from", str(made.paths[0]), "--out", str(tmp_path / "again")]) == 0
    err = capsys.readouterr().err
    assert "ignored" not in err and "cannot follow" not in err, err  # Forge's Euler + Simple needs no note
    [again] = list((tmp_path / "again").rglob("*.png"))
    with Image.open(again) as b, Image.open(made.paths[0]) as a:
        assert b.text["parameters"] == a.text["parameters"]
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture
def online_lib(library, tmp_path, monkeypatch, hub):
    """A library holding only a Z-Image transformer file, the fake Hub online: its encoder and VAE must be fetched."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    lib = tmp_path / "lib"
    (lib / "checkpoint").mkdir(parents=True)
    shutil.copyfile(library / "checkpoint" / "tiny-zimage.safetensors", lib / "checkpoint" / "z.safetensors")
    monkeypatch.setenv("COLAB_SD_HOME", str(lib))
    CACHE.release()
    return lib


def _component_files(library) -> dict:
    return {"split_files/text_encoders/qwen_3_4b.safetensors": (library / "text_encoder" / "tiny-qwen3.safetensors")
            .read_bytes(), "split_files/vae/ae.safetensors": (library / "vae" / "tiny-flux-vae.safetensors").read_bytes()}


def _no_partial_under_final_names(lib) -> list:
    return [p.name for p in lib.rglob("*") if p.is_file() and p.suffix == ".safetensors" and p.parent.name != "checkpoint"]


def test_a_component_missing_on_the_hub_is_one_line(library, online_lib, hub):
    """The public repo answers 404 for the encoder file (moved / renamed upstream)."""
    files = _component_files(library)
    del files["split_files/text_encoders/qwen_3_4b.safetensors"]
    hub.add_repo("Comfy-Org/z_image_turbo", files)
    with pytest.raises(ColabSDError) as err:
        colab_sd.generate(model="z", **SMALL)
    text = str(err.value)
    assert "\n" not in text and "qwen_3_4b" in text and "text_encoder" in text, text
    assert "put such a file in" in text and "text_encoder/ yourself" in text  # what the user can do about it
    assert _no_partial_under_final_names(online_lib) in ([], ["ae.safetensors"])


def test_a_corrupt_component_download_leaves_no_file_under_its_final_name(library, online_lib, hub):
    """The CDN serves the encoder with one byte flipped: the sha256 check fails; nothing is kept as the model."""
    repo = hub.add_repo("Comfy-Org/z_image_turbo", _component_files(library))
    repo.corrupt.add("split_files/text_encoders/qwen_3_4b.safetensors")
    with pytest.raises(ColabSDError) as err:
        colab_sd.generate(model="z", **SMALL)
    assert "\n" not in str(err.value), str(err.value)
    assert not (online_lib / "text_encoder" / "qwen_3_4b.safetensors").exists()


def test_a_hub_token_never_reaches_events_or_files(library, online_lib, hub, monkeypatch):
    """The token set for the Hub (HF_TOKEN) is used for the component fetch and appears in no event, sidecar or
    output PNG."""
    import json

    from fakes.hf_hub import TOKEN

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.add_repo("Comfy-Org/z_image_turbo", _component_files(library), gated=True)
    events = []
    result = colab_sd.generate(model="z", on_event=events.append, **{**SMALL, "save": True})
    seen = " ".join(json.dumps(getattr(e, "__dict__", {}), default=str) + repr(e) for e in events)
    assert TOKEN not in seen
    for path in list(online_lib.rglob("*")) + list(result.paths):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_text_encoder_in_checkpoint_says_where_it_belongs(library):
    """ComfyUI users drop t5xxl_fp16.safetensors into checkpoint/ (it shows in the Model dropdown); the message
    said 'choose a model from checkpoint/' about a file that is in checkpoint/."""
    stray = library / "checkpoint" / "t5xxl-stray.safetensors"
    shutil.copy(library / "text_encoder" / "tiny-t5xxl.safetensors", stray)
    try:
        with pytest.raises(InputError, match=r"t5xxl-stray\.safetensors is not a checkpoint \(it looks like t5-xxl "
                                             r"text encoder \(safetensors\)\): it belongs in text_encoder/ \(move it "
                                             r"there\)"):
            colab_sd.generate(model="t5xxl-stray.safetensors", **SMALL)
    finally:
        stray.unlink()


def test_klein_9b_refusal_does_not_read_as_it_would_run(library, tmp_path):
    """A Klein 9B file (released widths, header only): was '… does not load yet; it would fit (…)', which reads as
    if it were about to run."""
    import safetensors_factory as sf

    path = sf.write_safetensors(tmp_path / "flux-2-klein-9b.safetensors", {
        "double_stream_modulation_img.lin.weight": ("BF16", [24576, 4096]), "txt_in.weight": ("BF16", [4096, 12288])})
    with pytest.raises(InputError) as err:
        colab_sd.generate(model=str(path), **SMALL)
    text = str(err.value)
    assert text.startswith("flux-2-klein-9b is Flux.2 Klein 9B (9.1B parameters), which colab_sd does not load yet;")
    assert "colab_sd has no loader for it" in text and "it would fit" not in text and "\n" not in text, text


def test_models_listing_shows_the_header_family_when_the_sidecar_names_another(library, capsys):
    """`colab-sd models` showed 'Flux.1 D' (the sidecar's baseModel) for a Z-Image file that generates as Z-Image."""
    import json

    from colab_sd.cli import main

    model = library / "checkpoint" / "zi-listed.safetensors"
    shutil.copy(library / "checkpoint" / "tiny-zimage.safetensors", model)
    sidecar = library / "checkpoint" / "zi-listed.safetensors.json"
    sidecar.write_text(json.dumps({"base_model": "Flux.1 D"}))
    try:
        assert main(["models", "--dir", str(library)]) == 0
        [row] = [line for line in capsys.readouterr().out.splitlines() if "zi-listed" in line]
        assert "Z-Image Turbo (sidecar: Flux.1 D)" in row, row
        sidecar.write_text(json.dumps({"base_model": "ZImageTurbo"}))  # agreeing: the sidecar's name, as before
        assert main(["models", "--dir", str(library)]) == 0
        [row] = [line for line in capsys.readouterr().out.splitlines() if "zi-listed" in line]
        assert "ZImageTurbo" in row and "sidecar:" not in row, row
    finally:
        model.unlink()
        sidecar.unlink()


def test_a_library_component_is_announced_with_its_own_precision(library):
    """Was 'T5-XXL text encoder (fp8, upcast on load): tiny-t5xxl.safetensors from the library' for an fp32 file
    (the catalogue's label of the file it would fetch); fixed in 9c5bdef by its owner."""
    CACHE.release()
    _, messages = infos(model="tiny-flux-dev.safetensors")
    [t5] = [m for m in messages if "tiny-t5xxl.safetensors from the library" in m]
    assert "fp8" not in t5, t5


@pytest.mark.parametrize("status, body, ctype", [
    (200, b"<!DOCTYPE html><html><body>Sign in to continue</body></html>", "text/html"),
    (500, b"<html><title>500 Internal Server Error</title></html>", "text/html")])
def test_a_hub_answering_a_page_for_a_component_is_one_line(library, online_lib, hub, monkeypatch, status, body, ctype):
    """The Hub (or a proxy in front of it) answers the component's file with an HTML page / a 500: one line,
    nothing under text_encoder/ or vae/ under a final name."""
    from fakes.hf_hub import send

    hub.add_repo("Comfy-Org/z_image_turbo", _component_files(library))
    monkeypatch.setattr(hub, "_resolve", lambda h, *args: send(h, status, body, ctype))
    with pytest.raises(ColabSDError) as err:
        colab_sd.generate(model="z", **SMALL)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value), str(err.value)
    assert "try again later, or put such a file in" in str(err.value)
    assert _no_partial_under_final_names(online_lib) == []


def test_a_side_the_family_cannot_take_is_one_line(library):
    """Z-Image with a full-depth VAE (factor 8, as released): width 72 (1080 at full size) passes the multiple-of-8
    check and then failed inside diffusers with a bare ValueError ('Width must be divisible by 16'); Flux resized
    such sizes silently while the infotext kept the asked size."""
    import torch
    import tiny_models
    from diffusers import AutoencoderKL

    folder = library / "checkpoint" / "zimage-vae8-diffusers"
    if not folder.exists():
        pipe = tiny_families.build_zimage()
        torch.manual_seed(1)
        pipe.register_modules(vae=AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, latent_channels=16,
            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
            norm_num_groups=8, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
            use_post_quant_conv=False))
        tiny_models.save_diffusers(pipe, folder)
    with pytest.raises(InputError, match=r"^width 72 is not a multiple of 16, which Z-Image Turbo needs: use 64 or 80$"):
        colab_sd.generate(model="zimage-vae8-diffusers", **{**SMALL, "width": 72})
    result = colab_sd.generate(model="zimage-vae8-diffusers", **{**SMALL, "width": 80})
    assert result.images[0].size == (80, 64)
