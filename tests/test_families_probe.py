"""Every family recognised from headers alone, at the released shapes (sparse files: zero data, real headers),
the variants files cannot tell apart decided by name / sidecar / metadata, and the registry's per-family answers.
No torch: the probe and the registry are plain Python."""
from __future__ import annotations

import pytest

import safetensors_factory as sf
from colab_sd import probe
from colab_sd.errors import InputError
from colab_sd.generation import families
from colab_sd.generation.components import arch_of, header, stored_dtype

BF16, FP8, U8 = "BF16", "F8_E4M3", "U8"


def flux_keys(prefix="", guidance=True, width_in=64, chroma=False):
    keys = {f"{prefix}double_blocks.0.img_attn.norm.key_norm.scale": (BF16, [128]),
            f"{prefix}double_blocks.0.img_attn.qkv.weight": (BF16, [9216, 3072]),
            f"{prefix}single_blocks.0.linear1.weight": (BF16, [21504, 3072]),
            f"{prefix}img_in.weight": (BF16, [3072, width_in])}
    if guidance and not chroma:
        keys[f"{prefix}guidance_in.in_layer.weight"] = (BF16, [3072, 256])
    if chroma:
        keys[f"{prefix}distilled_guidance_layer.in_proj.weight"] = (BF16, [5120, 64])
    return keys


CASES = {
    "zimage": ({"cap_embedder.1.weight": (BF16, [3840, 2560]), "x_pad_token": (BF16, [1, 3840]),
                "cap_pad_token": (BF16, [1, 3840]), "context_refiner.0.attention.qkv.weight": (BF16, [11520, 3840]),
                "layers.0.adaLN_modulation.0.weight": (BF16, [15360, 256])}, "zimage", None),
    "flux-dev": (flux_keys("model.diffusion_model."), "flux", None),
    "flux-schnell": (flux_keys(guidance=False), "flux", "schnell"),
    "flux-fill": (flux_keys(width_in=384), "flux", "inpaint"),
    "chroma": (flux_keys(chroma=True), "chroma", None),
    "sd3-medium": ({"joint_blocks.23.context_block.attn.qkv.weight": (BF16, [4608, 1536]),
                    "pos_embed": (BF16, [1, 36864, 1536])}, "sd3", None),
    "sd35-medium": ({"joint_blocks.23.x_block.attn2.qkv.weight": (BF16, [4608, 1536]),
                     "pos_embed": (BF16, [1, 147456, 1536])}, "sd3", "3.5-medium"),
    "sd35-large": ({"joint_blocks.37.x_block.mlp.fc1.weight": (BF16, [9728, 2432])}, "sd3", "3.5-large"),
    "klein-4b": ({"double_stream_modulation_img.lin.weight": (BF16, [18432, 3072]),
                  "single_stream_modulation.lin.weight": (BF16, [9216, 3072]), "img_in.weight": (BF16, [3072, 128]),
                  "txt_in.weight": (BF16, [3072, 7680])}, "flux2", "klein-4b"),
    "klein-9b": ({"double_stream_modulation_img.lin.weight": (BF16, [24576, 4096]),
                  "txt_in.weight": (BF16, [4096, 12288])}, "flux2", "klein-9b"),
    "flux2-dev": ({"double_stream_modulation_img.lin.weight": (BF16, [36864, 6144]),
                   "txt_in.weight": (BF16, [6144, 15360])}, "flux2", "dev"),
    "qwen-image": ({"txt_norm.weight": (BF16, [3584]), "txt_in.weight": (BF16, [3072, 3584]),
                    "img_in.weight": (BF16, [3072, 64]), "transformer_blocks.0.attn.to_q.weight": (BF16, [3072, 3072])},
                   "qwen-image", None),
    "hidream": ({"double_stream_blocks.0.block.adaLN_modulation.1.bias": (BF16, [15360]),
                 "caption_projection.0.linear.weight": (BF16, [2560, 4096])}, "hidream", None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_family_from_the_header_alone(tmp_path, name):
    keys, family, variant = CASES[name]
    found = probe.inspect(sf.write_safetensors(tmp_path / f"{name}.safetensors", keys))
    assert (found.kind, found.family, found.variant) == ("checkpoint", family, variant), found.reasons
    assert any("diffusion model only" in r for r in found.reasons)


def test_gguf_architecture_is_reported_and_keys_decide(tmp_path):
    shapes = {k: v[1] for k, v in CASES["zimage"][0].items()}
    found = probe.inspect(sf.make_gguf(tmp_path / "z.gguf", shapes, {"general.architecture": "lumina2"}))
    assert found.family == "zimage" and found.format == "gguf"
    assert any("general.architecture = 'lumina2'" in r for r in found.reasons)
    klein = {k: v[1] for k, v in CASES["klein-4b"][0].items()}
    found = probe.inspect(sf.make_gguf(tmp_path / "k.gguf", klein, {"general.architecture": "flux"}))
    assert (found.family, found.variant) == ("flux2", "klein-4b")  # "flux" is written for Flux.2 too: keys decide


def test_fp8_scaled_and_nf4_markers(tmp_path):
    scaled = dict(flux_keys(), **{"scaled_fp8": (FP8, [0]), "double_blocks.0.img_attn.qkv.scale_weight": ("F32", [1])})
    scaled = {k: ((FP8, s) if k.endswith("qkv.weight") else (d, s)) for k, (d, s) in scaled.items()}
    path = sf.write_safetensors(tmp_path / "flux-fp8-scaled.safetensors", scaled)
    found = probe.inspect(path)
    assert found.family == "flux" and any("scaled fp8" in r for r in found.reasons)
    nf4 = dict(flux_keys(), **{"double_blocks.0.img_attn.qkv.weight.quant_state.bitsandbytes__nf4": (U8, [64])})
    found = probe.inspect(sf.write_safetensors(tmp_path / "flux1-dev-bnb-nf4.safetensors", nf4))
    assert any("NF4" in r and "GGUF" in r for r in found.reasons)


def test_nf4_bundle_is_refused_naming_the_gguf_alternative(tmp_path):
    from colab_sd.generation.models import resolve_model

    nf4 = dict(flux_keys(), **{"double_blocks.0.img_attn.qkv.weight.quant_state.bitsandbytes__nf4": (U8, [64])})
    path = sf.write_safetensors(tmp_path / "flux1-dev-bnb-nf4.safetensors", nf4)
    with pytest.raises(InputError, match="NF4.*GGUF") as err:
        resolve_model(str(path))
    assert "\n" not in str(err.value)
    scaled = dict(flux_keys(), **{"scaled_fp8": (FP8, [0]), "double_blocks.0.img_attn.qkv.scale_weight": ("F32", [1])})
    path = sf.write_safetensors(tmp_path / "flux1-dev-fp8-scaled.safetensors", scaled)
    ref = resolve_model(str(path))  # rescaled while loading (families.fp8; tests/test_families_fp8.py)
    assert any("scaled fp8: each weight × its scale" in r for r in ref.reasons)


def test_text_encoders_alone_are_a_kind_with_their_architecture(tmp_path):
    cases = {
        "t5xxl_fp8_e4m3fn": ({"shared.weight": (FP8, [32128, 4096]),
                              "encoder.block.0.layer.0.SelfAttention.q.weight": (FP8, [4096, 4096])}, "t5-xxl"),
        "clip_l": ({"text_model.embeddings.token_embedding.weight": (BF16, [49408, 768]),
                    "text_model.encoder.layers.0.self_attn.k_proj.weight": (BF16, [768, 768])}, "clip-l"),
        "clip_g": ({"text_model.embeddings.token_embedding.weight": (BF16, [49408, 1280]),
                    "text_model.encoder.layers.0.self_attn.k_proj.weight": (BF16, [1280, 1280])}, "clip-g"),
        "qwen_3_4b": ({"model.embed_tokens.weight": (BF16, [151936, 2560]),
                       "model.layers.0.self_attn.q_norm.weight": (BF16, [128])}, "qwen3"),
    }
    for name, (keys, arch) in cases.items():
        path = sf.write_safetensors(tmp_path / f"{name}.safetensors", keys)
        found = probe.inspect(path)
        assert (found.kind, found.variant) == ("text_encoder", arch), found.reasons
        assert arch_of(header(path)[0])[0] == arch
    assert stored_dtype(header(tmp_path / "t5xxl_fp8_e4m3fn.safetensors")[1]) == "fp8"


@pytest.mark.parametrize("family,shape_variant,name,sidecar,metadata,expected", [
    ("flux", None, "flux1-krea-dev_fp8.safetensors", None, None, "krea"),
    ("flux", None, "my-edit.safetensors", {"baseModel": "Flux.1 Kontext"}, None, "kontext"),
    ("flux", None, "flux1-dev.safetensors", None, None, "dev"),
    ("flux", "schnell", "flux1-krea.safetensors", None, None, "schnell"),  # shapes outrank the name
    ("zimage", None, "z_image_turbo_bf16.safetensors", None, None, "turbo"),
    ("zimage", None, "zimage.safetensors", None, {"modelspec.title": "Z-Image Base"}, "base"),
    ("zimage", None, "z-image-base-Q8_0.gguf", None, None, "base"),
    ("sd3", "3.5-large", "sd3.5_large_turbo.safetensors", None, None, "3.5-large-turbo"),
    ("sd3", "3.5-large", "sd3.5_large.safetensors", {"baseModel": "SD 3.5 Large Turbo"}, None, "3.5-large-turbo"),
    ("flux2", "klein-4b", "flux-2-klein-base-4b.safetensors", None, None, "klein-4b-base"),
    ("flux2", "klein-4b", "flux-2-klein-4b.safetensors", None, None, "klein-4b"),
])
def test_variants_by_sidecar_metadata_or_name(family, shape_variant, name, sidecar, metadata, expected):
    variant, why = families.decide_variant(families.get(family), shape_variant, name, sidecar, metadata)
    assert variant == expected and why


def test_registry_answers_for_the_panel():
    turbo, base = families.lookup("zimage", "turbo"), families.lookup("zimage", "base")
    assert turbo.controls["cfg"] is None and not turbo.controls["negative_prompt"] and not turbo.controls["sampler"]
    assert base.controls["cfg"] == ("CFG scale", 4.0) and base.controls["negative_prompt"] and base.shift == 6.0
    assert families.lookup("flux", "dev").controls["cfg"] == ("Guidance", 3.5)
    sdxl = families.lookup("sdxl")
    assert sdxl.controls["sampler"] and sdxl.controls["clip_skip"] and sdxl.controls["negative_prompt"]
    assert not families.lookup("flux2", "klein-9b").supported and not families.get("qwen-image").supported
    for fam in families.REGISTRY.values():  # every transformer family names ungated sources for what it lacks
        for comp in fam.components:
            assert comp.size > 0 and comp.label


def test_models_cli_shows_family_and_variant_without_a_sidecar(tmp_path, capsys):
    import json

    from colab_sd import cli

    root = tmp_path / "models"
    sf.write_safetensors(root / "checkpoint" / "flux1-krea-dev.safetensors", flux_keys())
    sf.write_safetensors(root / "checkpoint" / "schnell-finetune.safetensors", flux_keys(guidance=False))
    sf.make_gguf(root / "checkpoint" / "z-image-base-Q8_0.gguf", {k: v[1] for k, v in CASES["zimage"][0].items()})
    sf.write_safetensors(root / "text_encoder" / "t5xxl_fp16.safetensors",
                         {"shared.weight": ("F16", [32128, 4096]),
                          "encoder.block.0.layer.0.SelfAttention.q.weight": ("F16", [4096, 4096])})
    sf.make_lora(root / "lora" / "flux-style.safetensors", "flux")
    assert cli.main(["models", "--dir", str(root), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["flux-style.safetensors"]["family_label"] == "Flux"  # a LoRA is for the family, not "Flux dev"
    assert (rows["flux1-krea-dev.safetensors"]["family"], rows["flux1-krea-dev.safetensors"]["variant"]) == ("flux", "krea")
    assert rows["schnell-finetune.safetensors"]["family_label"] == "Flux schnell"
    assert rows["z-image-base-Q8_0.gguf"]["family_label"] == "Z-Image Base"
    assert rows["t5xxl_fp16.safetensors"]["kind"] == "text_encoder"
    assert rows["t5xxl_fp16.safetensors"]["family_label"] == "T5-XXL"
    assert cli.main(["models", "--dir", str(root)]) == 0
    table = capsys.readouterr().out
    assert "Flux Krea dev" in table and "Z-Image Base" in table
