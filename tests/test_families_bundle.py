"""Whole-model single files ("bundles", as ComfyUI saves checkpoints and Stability ships `sd3.5_medium_incl_clips…`):
the denoiser under `model.diffusion_model.`, CLIP-L / CLIP-G / T5-XXL under `text_encoders.*.transformer.` and the VAE
under `first_stage_model.`. colab_sd must take those parts from the file (no library lookup, no fetch, offline),
size the memory plan by each part, and still take from the library what the file holds in a form diffusers cannot
read (a ComfyUI scaled-fp8 T5). A tiny SD3 stands in for all bundle families: the Flux and Chroma converters
hard-wire the released widths, so no tiny Flux bundle can exist (families.md §2).
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
import tiny_models  # noqa: E402
from colab_sd.errors import ColabSDError  # noqa: E402
from colab_sd.generation import families  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402
from colab_sd.generation.families import bundle  # noqa: E402
from tiny_original import sd3_to_original  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SEED, PROMPT = 3, "a green house"
CALL = dict(guidance_scale=7.0, negative_prompt="blurry", max_sequence_length=256)
ENCODERS = (("text_encoders.clip_l.transformer.", "text_encoder"), ("text_encoders.clip_g.transformer.", "text_encoder_2"),
            ("text_encoders.t5xxl.transformer.", "text_encoder_3"))


def _bundle(pipe, scaled_t5: bool = False) -> dict:
    sd = sd3_to_original({k: v.detach().clone() for k, v in pipe.transformer.state_dict().items()},
                         "model.diffusion_model.")
    for prefix, role in ENCODERS:
        for key, value in getattr(pipe, role).state_dict().items():
            sd[prefix + key] = value.detach().clone()
    if scaled_t5:  # as ComfyUI's t5xxl_fp8_e4m3fn_scaled: fp8 weights that mean nothing without their scale
        for key in [k for k in sd if k.startswith("text_encoders.t5xxl.") and k.endswith(".weight")
                    and sd[k].ndim == 2 and "shared" not in k and "embed" not in k]:
            scale = sd[key].abs().max() / 448.0
            sd[key] = (sd[key] / scale).to(torch.float8_e4m3fn)
            sd[key[: -len("weight")] + "scale_weight"] = scale.reshape(())
        sd["text_encoders.t5xxl.transformer.scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    sd.update(tiny_models.vae_to_original(pipe.vae.state_dict(), prefix="first_stage_model."))
    return sd


def _save(sd: dict, path):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: (v if v.dtype == torch.float8_e4m3fn else v.float()).contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    pipe = tiny_families.build_sd3()
    with torch.no_grad():  # SD3 bundles store CLIP-L without a projection; diffusers makes it the identity
        pipe.text_encoder.text_projection.weight.copy_(torch.eye(32))
    _save(_bundle(pipe), root / "checkpoint" / "tiny-sd3-aio.safetensors")
    _save(_bundle(pipe, scaled_t5=True), root / "checkpoint" / "tiny-sd3-aio-t5scaled.safetensors")
    tiny_families.save_config_folder(pipe, root / "_configs" / "sd3-medium")
    yield root, pipe
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(library, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, library[0], tmp_path / "outputs")


def _direct(pipe):
    out = pipe(prompt=PROMPT, num_inference_steps=2, width=64, height=64, output_type="np",
               generator=torch.Generator("cpu").manual_seed(SEED), **CALL)
    return (out.images[0] * 255).round()


def test_header_says_which_parts_a_bundle_holds(library):
    root = library[0]
    fam = families.lookup("sd3", "medium")
    path = root / "checkpoint" / "tiny-sd3-aio.safetensors"
    assert bundle.embedded(fam, path) == {"text_encoder": "text_encoders.clip_l.transformer.",
                                          "text_encoder_2": "text_encoders.clip_g.transformer.",
                                          "text_encoder_3": "text_encoders.t5xxl.transformer.",
                                          "vae": "first_stage_model."}
    sizes = bundle.part_sizes(fam, path)
    denoiser = sum(t.numel() for t in library[1].transformer.state_dict().values())
    assert sizes["transformer"][0] * 1e9 == pytest.approx(denoiser, rel=0.01)  # not the whole file as denoiser
    assert set(sizes) == {"transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae"}
    scaled = root / "checkpoint" / "tiny-sd3-aio-t5scaled.safetensors"
    assert "text_encoder_3" not in bundle.embedded(fam, scaled)
    assert bundle.held(fam, scaled)[1] == ["T5-XXL text encoder (fp8, upcast on load)"]


def test_a_bundle_generates_from_its_own_parts_offline(library):
    root, pipe = library
    assert not (root / "text_encoder").exists() and not (root / "vae").exists()  # nothing else to take them from
    events = []
    result = colab_sd.generate(model="tiny-sd3-aio", prompt=PROMPT, negative_prompt="blurry", steps=2, width=64,
                               height=64, seed=SEED, cfg=7.0, on_event=events.append)
    said = " ".join(getattr(e, "message", "") for e in events)
    assert "CLIP-L text encoder, CLIP-G text encoder, T5-XXL text encoder, SD3 VAE: from tiny-sd3-aio.safetensors" \
        in said, said
    assert "fetching" not in said
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.shape == (64, 64, 3) and image.std() > 1.0
    assert np.abs(image - _direct(pipe)).mean() < 1.0  # fp32 file: the same picture diffusers makes


def test_a_scaled_fp8_encoder_in_a_bundle_comes_from_the_library(library, tmp_path):
    root, pipe = library
    events = []
    with pytest.raises(ColabSDError, match="T5-XXL"):  # offline, and the library has no T5 yet
        colab_sd.generate(model="tiny-sd3-aio-t5scaled", prompt=PROMPT, steps=2, width=64, height=64, seed=SEED,
                          on_event=events.append)
    said = " ".join(getattr(e, "message", "") for e in events)
    assert "ComfyUI scaled fp8, which diffusers cannot read correctly" in said
    t5 = root / "text_encoder" / "tiny-t5xxl.safetensors"
    _save({k: v.detach().clone() for k, v in pipe.text_encoder_3.state_dict().items()}, t5)
    try:
        result = colab_sd.generate(model="tiny-sd3-aio-t5scaled", prompt=PROMPT, negative_prompt="blurry", steps=2,
                                   width=64, height=64, seed=SEED, cfg=7.0)
        image = np.asarray(result.images[0], dtype=np.float32)
        assert np.abs(image - _direct(pipe)).mean() < 1.0
    finally:
        t5.unlink()
        CACHE.release()
