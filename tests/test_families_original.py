"""SD3 / SD3.5 and Flux.2 Klein single files in the *released* key layout (what Stability's, BFL's and ComfyUI's
downloads hold: `joint_blocks.N.x_block.attn.qkv`, `double_blocks.N.img_attn.qkv`, `model.diffusion_model.` prefix),
probed from the header and generated from end to end on the CPU, offline, through `colab_sd.generate`.

The files are written by `tiny_original` (the reverse of diffusers' converters); the first tests prove that reverse
is exact through diffusers' own converter, so the rest test colab_sd on what a user's file really holds. The image
must be what diffusers makes with the same tiny pipeline and seed (test_families_more.py covers the diffusers-layout
single files, GGUF and folders of the same families).
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
from colab_sd.generation.cache import CACHE  # noqa: E402
from colab_sd.probe import inspect  # noqa: E402
from tiny_original import flux2_to_original, sd3_to_original  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SEED = 5
PROMPT = "a red bicycle"


def build_sd35_medium(seed: int = 0):
    """SD3.5 Medium's shape in small: MMDiT-X (a second attention in the first block) and RMS qk-norm."""
    from diffusers import SD3Transformer2DModel

    pipe = tiny_families.build_sd3(seed)
    torch.manual_seed(seed + 9)
    pipe.transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=1, in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=16,
        dual_attention_layers=(0,), qk_norm="rms_norm")
    pipe.register_modules(transformer=pipe.transformer)
    return pipe


def _weights(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _save(sd: dict, path, dtype=torch.bfloat16):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("original")
    sd3, sd35, klein = tiny_families.build_sd3(), build_sd35_medium(), tiny_families.build_klein()
    ckpt = root / "checkpoint"
    _save(sd3_to_original(_weights(sd3.transformer)), ckpt / "tiny-sd3-original.safetensors")
    _save(sd3_to_original(_weights(sd35.transformer), "model.diffusion_model."), ckpt / "tiny-sd35m-original.safetensors")
    _save(flux2_to_original(_weights(klein.transformer)), ckpt / "tiny-klein-original.safetensors")
    tiny_families.save_config_folder(sd3, root / "_configs" / "sd3-medium")
    tiny_families.save_config_folder(sd35, root / "_configs" / "sd3.5-medium")
    tiny_families.save_config_folder(klein, root / "_configs" / "flux2-klein-4b")
    enc = root / "text_encoder"
    _save(_weights(sd3.text_encoder), enc / "tiny-clip_l.safetensors", torch.float32)
    _save(_weights(sd3.text_encoder_2), enc / "tiny-clip_g.safetensors", torch.float32)
    _save(_weights(sd3.text_encoder_3), enc / "tiny-t5xxl.safetensors", torch.float32)
    _save(tiny_families.qwen_to_comfy(_weights(klein.text_encoder)), enc / "tiny-qwen3-klein.safetensors",
          torch.float32)
    _save(tiny_models.vae_to_original(_weights(sd3.vae), prefix=""), root / "vae" / "tiny-sd3-vae.safetensors",
          torch.float32)
    klein.vae.save_pretrained(str(root / "_klein_vae"), safe_serialization=True)
    (root / "vae").mkdir(exist_ok=True)
    os.replace(root / "_klein_vae" / "diffusion_pytorch_model.safetensors", root / "vae" / "tiny-flux2-vae.safetensors")
    yield root, {"sd3": sd3, "sd35": sd35, "klein": klein}
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(library, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, library[0], tmp_path / "outputs")


@pytest.mark.parametrize("key", ["sd3", "sd35", "klein"])
def test_released_layout_round_trips_through_diffusers_converter(library, key):
    from diffusers.loaders import single_file_utils as sfu

    model = library[1][key].transformer
    sd = _weights(model)
    if key == "klein":
        back = sfu.convert_flux2_transformer_checkpoint_to_diffusers(flux2_to_original(sd))
    else:
        back = sfu.convert_sd3_transformer_checkpoint_to_diffusers(sd3_to_original(sd, "model.diffusion_model."))
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("stem, family, variant, why", [
    ("tiny-sd3-original", "sd3", None, "joint_blocks"),
    ("tiny-sd35m-original", "sd3", "3.5-medium", "second attention"),
    ("tiny-klein-original", "flux2", None, "double_stream_modulation_img"),  # tiny widths: 4B assumed
])
def test_released_layout_is_probed_from_the_header(library, stem, family, variant, why):
    probe = inspect(library[0] / "checkpoint" / f"{stem}.safetensors")
    assert (probe.kind, probe.family) == ("checkpoint", family)
    assert probe.variant == variant
    assert any(why in str(r) for r in probe.reasons), probe.reasons


@pytest.mark.parametrize("stem, key, call", [
    ("tiny-sd3-original", "sd3", dict(guidance_scale=7.0, negative_prompt="blurry", max_sequence_length=256)),
    ("tiny-sd35m-original", "sd35", dict(guidance_scale=4.5, negative_prompt="blurry", max_sequence_length=256)),
    ("tiny-klein-original", "klein", dict(guidance_scale=1.0, max_sequence_length=512)),
])
def test_released_layout_generates_like_diffusers(library, stem, key, call):
    negative, events = call.get("negative_prompt", ""), []
    result = colab_sd.generate(model=stem, prompt=PROMPT, negative_prompt=negative, steps=2, width=64, height=64,
                               seed=SEED, cfg=call["guidance_scale"], on_event=events.append)
    image = np.asarray(result.images[0], dtype=np.float32)
    direct = library[1][key](prompt=PROMPT, num_inference_steps=2, width=64, height=64, output_type="np",
                             generator=torch.Generator("cpu").manual_seed(SEED), **call).images[0]
    assert image.shape == (64, 64, 3) and image.std() > 1.0
    # bf16 file against the fp32 original: the same picture within rounding (test_families_more uses 3.0)
    assert np.abs(image - (direct * 255).round()).mean() < 3.0
    said = " ".join(getattr(e, "message", "") for e in events)
    name = {"sd3": "SD3 Medium", "sd35": "SD3.5 Medium", "klein": "Flux.2 Klein"}[key]
    assert f"memory plan: {name}" in said, said  # the variant the header decided is the one shown
