"""colab_sd.probe: kind and family from headers only, on hand-made but genuinely valid files."""
from __future__ import annotations

import builtins
import json
import os
import pickle
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import safetensors_factory as sf
from colab_sd import probe
from colab_sd.errors import InputError
from colab_sd.library import KINDS
from colab_sd.probe import Probe, headers, inspect, inspect_keys, read_safetensors_header

# ========================================================================================================== checkpoints

CHECKPOINTS = [
    # family, variant, expected reason fragment
    ("sd1", None, "768-wide context"),
    ("sd2", None, "1024-wide context"),
    ("sdxl", None, "conditioner.embedders.1"),
    ("sdxl-refiner", None, "1280-wide context"),
    ("sd1", "inpaint", "9 input channels"),
    ("sd2", "inpaint", "9 input channels"),
    ("sdxl", "inpaint", "9 input channels"),
    ("sd1", "instruct-pix2pix", "8 input channels"),
    ("sdxl", "v-prediction", "v_pred"),
    ("sd3", None, "joint_blocks"),
    ("flux", None, "double_blocks"),
    ("flux", "schnell", "no guidance_in"),
    ("flux", "inpaint", "384"),
]


@pytest.mark.parametrize("family,variant,why", CHECKPOINTS, ids=[f"{f}-{v}" for f, v, _ in CHECKPOINTS])
def test_checkpoint_safetensors(tmp_path, family, variant, why):
    path = sf.make_checkpoint(tmp_path / "model.safetensors", family, variant)
    result = inspect(path)
    assert (result.kind, result.family, result.variant, result.format) == ("checkpoint", family, variant, "safetensors")
    assert any(why in r for r in result.reasons), result.reasons


def test_flux_without_wrapper_prefix_is_flux_transformer_only(tmp_path):
    result = inspect(sf.make_checkpoint(tmp_path / "flux1-dev.safetensors", "flux", prefix=False))
    assert (result.kind, result.family, result.variant) == ("checkpoint", "flux", None)
    assert any("text encoders and VAE come separately" in r for r in result.reasons)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl-refiner"])
@pytest.mark.parametrize("fmt", ["ckpt", "legacy"])
def test_checkpoint_pickles_are_read_from_opcodes(tmp_path, family, fmt):
    path = sf.make_checkpoint(tmp_path / "model.ckpt", family, fmt=fmt)
    result = inspect(path)
    assert (result.kind, result.family, result.format) == ("checkpoint", family, "pickle")
    assert any("nothing was unpickled" in r for r in result.reasons)
    assert any("prefer a .safetensors" in r for r in result.reasons)


def test_plain_pickle_ckpt_without_tensors_classified_by_key_names(tmp_path):
    names = list(sf.checkpoint_tensors("sdxl"))
    result = inspect(sf.make_plain_pickle_ckpt(tmp_path / "plain.ckpt", names))
    assert (result.kind, result.family, result.format) == ("checkpoint", "sdxl", "pickle")
    assert any("conditioner.embedders.1" in r for r in result.reasons)


# ================================================================================================================= LoRA

LORA_STYLES = {"kohya": None, "locon": None, "loha": "loha", "lokr": "lokr", "dora": "dora", "diffusers": None,
               "peft": None}
LORA_CASES = [(fam, style) for fam in ("sd1", "sd2", "sdxl", "flux", "sd3") for style in LORA_STYLES
              if not (fam in ("flux", "sd3") and style == "locon")]


@pytest.mark.parametrize("family,style", LORA_CASES, ids=[f"{f}-{s}" for f, s in LORA_CASES])
def test_lora_family_from_keys_and_shapes(tmp_path, family, style):
    result = inspect(sf.make_lora(tmp_path / "lora.safetensors", family, style))
    assert (result.kind, result.family, result.variant) == ("lora", family, LORA_STYLES[style])
    assert "→ LoRA" in result.reasons[0]
    assert len(result.reasons) >= 2, "family has a reason too"


def test_lora_locon_is_named_in_reasons(tmp_path):
    result = inspect(sf.make_lora(tmp_path / "locon.safetensors", "sd1", "locon"))
    assert "LoCon" in result.reasons[0]


def test_lora_kohya_metadata_is_kept_and_agrees(tmp_path):
    result = inspect(sf.make_lora(tmp_path / "l.safetensors", "sdxl", "kohya", kohya_metadata=True))
    assert result.family == "sdxl"
    assert result.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert not any("trusting the keys" in r for r in result.reasons)


def test_lora_family_from_metadata_when_keys_cannot_tell(tmp_path):
    # A LoRA on a self-attention projection only: no context width, no second encoder, no deep blocks.
    tensors = {"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": ("F16", [4, 1280]),
               "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": ("F16", [1280, 4]),
               "lora_unet_mid_block_attentions_0_proj_in.alpha": ("F32", [])}
    bare = inspect(sf.write_safetensors(tmp_path / "a.safetensors", tensors))
    assert (bare.kind, bare.family) == ("lora", None)
    assert any("do not tell the base model" in r for r in bare.reasons)
    hinted = inspect(sf.write_safetensors(tmp_path / "b.safetensors", tensors,
                                          {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}))
    assert (hinted.kind, hinted.family) == ("lora", "sdxl")
    assert any("modelspec.architecture" in r for r in hinted.reasons)


@pytest.mark.parametrize("metadata,family", [
    ({"ss_base_model_version": "sd_v1"}, "sd1"), ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
    ({"ss_base_model_version": "flux1"}, "flux"), ({"modelspec.architecture": "stable-diffusion-v2-768-v/lora"}, "sd2"),
    ({"modelspec.architecture": "stable-diffusion-3.5-large/lora"}, "sd3"), ({"ss_v2": "True"}, "sd2"),
    ({"ss_sd_model_name": "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"}, "sdxl"),
    ({"ss_sd_model_name": "v1-5-pruned-emaonly.safetensors"}, "sd1"), ({"ss_sd_model_name": "dreamshaper_8"}, None),
])
def test_lora_family_hints_in_metadata(metadata, family):
    keys = {"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": [4, 1280],
            "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": [1280, 4]}
    result = inspect_keys(keys, metadata)
    assert (result.kind, result.family) == ("lora", family)


def test_lora_deep_transformer_blocks_mean_sdxl_only_in_unets():
    lokr = {"lora_unet_output_blocks_1_1_transformer_blocks_3_attn1_to_q.lokr_w1": [4, 4],
            "lora_unet_output_blocks_1_1_transformer_blocks_3_attn1_to_q.lokr_w2": [320, 320]}
    assert inspect_keys(lokr).family == "sdxl"
    flux_ff = {"transformer.transformer_blocks.5.ff.net.0.proj.lora_A.weight": [4, 128],
               "transformer.transformer_blocks.5.ff.net.0.proj.lora_B.weight": [128, 4]}
    assert inspect_keys(flux_ff).family is None


def test_lora_keys_win_over_contradicting_metadata():
    keys = sf.lora_tensors("sd1", "kohya")
    result = inspect_keys({k: v[1] for k, v in keys.items()}, {"ss_base_model_version": "sdxl_base_v1-0"})
    assert result.family == "sd1"
    assert any("trusting the keys" in r for r in result.reasons)


def test_lora_v_parameterization_metadata():
    keys = {k: v[1] for k, v in sf.lora_tensors("sd2", "kohya").items()}
    result = inspect_keys(keys, {"ss_v2": "True", "ss_v_parameterization": "True"})
    assert (result.family, result.variant) == ("sd2", None)
    assert any("trained on a v-prediction model" in r for r in result.reasons)


def test_peft_raw_prefix_and_flux_aitoolkit_layout():
    keys = {"base_model.model.unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": [8, 768],
            "base_model.model.unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": [320, 8]}
    assert inspect_keys(keys).family == "sd1"
    flux = {"diffusion_model.double_blocks.0.img_attn.proj.lora_A.weight": [16, 3072],
            "diffusion_model.double_blocks.0.img_attn.proj.lora_B.weight": [3072, 16]}
    assert (inspect_keys(flux).kind, inspect_keys(flux).family) == ("lora", "flux")


@pytest.mark.parametrize("suffixes,variant", [((".on_input", ".weight"), "ia3"), ((".diff", ".diff_b"), "full"),
                                              ((".a1.weight", ".a2.weight", ".b1.weight", ".b2.weight"), "glora")])
def test_other_lycoris_algorithms(suffixes, variant):
    stem = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    result = inspect_keys({stem + s: [320] for s in suffixes})
    assert (result.kind, result.variant) == ("lora", variant)


def test_old_diffusers_processor_lora():
    keys = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight": [4, 1024],
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.up.weight": [320, 4]}
    result = inspect_keys(keys)
    assert (result.kind, result.family) == ("lora", "sd2")
    assert "diffusers-style" in result.reasons[0]


# =============================================================================== embeddings, VAE, ControlNet, upscalers


@pytest.mark.parametrize("family,width", [("sd1", 768), ("sd2", 1024), ("sdxl", 1280)])
def test_embedding_safetensors(tmp_path, family, width):
    result = inspect(sf.make_embedding(tmp_path / "emb.safetensors", family))
    assert (result.kind, result.family) == ("embedding", family)
    assert any(str(width) in r for r in result.reasons)


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_embedding_a1111_pickle(tmp_path, family):
    result = inspect(sf.make_embedding(tmp_path / "emb.pt", family, fmt="pt"))
    assert (result.kind, result.family, result.format) == ("embedding", family, "pickle")
    assert any("string_to_param" in r for r in result.reasons)


def test_embedding_diffusers_learned_embeds():
    result = inspect_keys({"<cat-toy>": [768]})
    assert (result.kind, result.family) == ("embedding", "sd1")


@pytest.mark.parametrize("layout", ["original", "diffusers"])
def test_vae_family_undecidable(tmp_path, layout):
    result = inspect(sf.make_vae(tmp_path / "vae.safetensors", layout))
    assert (result.kind, result.family) == ("vae", None)
    assert any("undecidable" in r for r in result.reasons)
    assert any(layout in r for r in result.reasons)


def test_vae_16_channels_and_metadata_hint(tmp_path):
    flux_vae = inspect(sf.make_vae(tmp_path / "ae.safetensors", latent_channels=16))
    assert (flux_vae.kind, flux_vae.family) == ("vae", None)
    assert any("16 latent channels" in r for r in flux_vae.reasons)
    xl = inspect(sf.make_vae(tmp_path / "sdxl_vae.safetensors",
                             metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"}))
    assert (xl.kind, xl.family) == ("vae", "sdxl")


def test_checkpoint_vae_part_is_not_a_vae():
    keys = {k: v[1] for k, v in sf.checkpoint_tensors("sd1").items()}
    assert inspect_keys(keys).kind == "checkpoint"
    vae_only = {k: v for k, v in keys.items() if k.startswith("first_stage_model.")}
    assert inspect_keys(vae_only).kind == "vae"


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("layout", ["original", "diffusers"])
def test_controlnet(tmp_path, family, layout):
    result = inspect(sf.make_controlnet(tmp_path / "cn.safetensors", family, layout))
    assert (result.kind, result.family) == ("controlnet", family)
    assert "ControlNet" in result.reasons[0]


def test_controlnet_other_formats():
    lllite = inspect_keys({"lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.down.0.weight": [32, 640]})
    assert (lllite.kind, lllite.family) == ("controlnet", "sdxl")
    xlabs = inspect_keys({"controlnet_blocks.0.weight": [3072, 3072],
                          "double_blocks.0.img_attn.qkv.weight": [9216, 3072],
                          "input_hint_block.0.weight": [16, 3, 3, 3]})
    assert (xlabs.kind, xlabs.family) == ("controlnet", "flux")


@pytest.mark.parametrize("arch,why", [("esrgan", "model.1.sub"), ("realesrgan", "rdb"), ("swinir", "residual_group"),
                                      ("compact", "SRVGGNet")])
def test_upscaler_safetensors(tmp_path, arch, why):
    result = inspect(sf.make_upscaler(tmp_path / "up.safetensors", arch))
    assert (result.kind, result.family) == ("upscaler", None)
    assert any(why in r for r in result.reasons)


@pytest.mark.parametrize("arch,fmt", [("realesrgan", "pth"), ("esrgan", "legacy")])
def test_upscaler_pickles(tmp_path, arch, fmt):
    result = inspect(sf.make_upscaler(tmp_path / "4x.pth", arch, fmt=fmt))
    assert (result.kind, result.format) == ("upscaler", "pickle")


# ================================================================================================== the pure classifier


def _ck(family, **extra):
    keys = {k: v[1] for k, v in sf.checkpoint_tensors(family).items()}
    keys.update(extra)
    return keys


@pytest.mark.parametrize("keys,expected", [
    ({"model.diffusion_model.joint_blocks.37.x_block.mlp.fc1.weight": [9728, 2432]}, ("checkpoint", "sd3", "3.5-large")),
    ({"double_layers.0.attn.w2q.weight": [3072, 3072], "cond_seq_linear.weight": [3072, 2048]},
     ("checkpoint", "auraflow", None)),
    ({"blocks.0.cross_attn.q_linear.weight": [1152, 1152], "y_embedder.y_proj.fc1.weight": [1152, 4096]},
     ("checkpoint", "pixart", None)),
    ({"blocks.0.cross_attn.q_linear.weight": [1152, 1152],
      "blocks.0.mlp.inverted_conv.conv.weight": [5760, 1152, 1, 1]},
     ("checkpoint", "sana", None)),
    ({"mlp_t5.0.weight": [8192, 2048], "blocks.0.attn1.Wqkv.weight": [4224, 1408]}, ("checkpoint", "hunyuan", None)),
    ({"clip_txt_mapper.weight": [2048, 1280]}, ("checkpoint", "sd-cascade", "stage-c")),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": [128], "distilled_guidance_layer.in_proj.weight": [5120, 64]},
     ("checkpoint", "chroma", None)),
    ({"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": [320, 768], "conv_in.weight": [320, 4, 3, 3],
      "up_blocks.1.attentions.0.proj_in.weight": [1280, 1280]}, ("other", "sd1", None)),
    ({"text_model.embeddings.token_embedding.weight": [49408, 768],
      "text_model.encoder.layers.0.self_attn.k_proj.weight": [768, 768]}, ("text_encoder", None, "clip-l")),
    ({"shared.weight": [32128, 4096], "encoder.block.0.layer.0.SelfAttention.q.weight": [4096, 4096]},
     ("text_encoder", None, "t5-xxl")),
    ({"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": [320]}, ("other", None, None)),
    ({"vision_model.encoder.layers.0.self_attn.k_proj.weight": [1280, 1280]}, ("other", None, None)),
    ({"image_proj.proj.weight": [3072, 1024], "ip_adapter.1.to_k_ip.weight": [320, 768]}, ("other", None, None)),
    ({"conv_first.weight": [64, 3, 3, 3], "layers.0.blocks.0.attn.qkv.weight": [540, 180],
      "conv_last.weight": [3, 64, 3, 3]}, ("upscaler", None, None)),
    ({"double_blocks.0.processor.qkv_lora1.down.weight": [16, 3072],
      "double_blocks.0.processor.qkv_lora1.up.weight": [9216, 16]}, ("lora", "flux", None)),
])
def test_inspect_keys_other_architectures(keys, expected):
    result = inspect_keys(keys)
    assert (result.kind, result.family, result.variant) == expected
    assert result.reasons


def test_inspect_keys_playground_and_pony_are_sdxl():
    assert inspect_keys(_ck("sdxl", edm_mean=[1, 4, 1, 1], edm_std=[1, 4, 1, 1])).variant == "playground-v2.5"
    pony = inspect_keys(_ck("sdxl"), {"modelspec.title": "Pony Diffusion V6 XL"})
    assert (pony.kind, pony.family, pony.variant) == ("checkpoint", "sdxl", None)


def test_inspect_keys_v_pred_ztsnr_and_edm_keys():
    noob = inspect_keys(_ck("sdxl", v_pred=[], ztsnr=[]))
    assert (noob.family, noob.variant) == ("sdxl", "v-prediction")
    assert any("zero terminal SNR" in r for r in noob.reasons)
    cosxl = inspect_keys(_ck("sdxl", **{"edm_vpred.sigma_max": [], "edm_vpred.sigma_min": []}))
    assert cosxl.variant == "edm-v-prediction"


def test_bare_weight_is_not_an_embedding():
    assert inspect_keys({"weight": [768]}).kind is None


def test_inspect_keys_v_prediction_from_metadata_and_unet_only():
    result = inspect_keys(_ck("sd2"), {"modelspec.architecture": "stable-diffusion-v2-768-v",
                                       "modelspec.prediction_type": "v"})
    assert (result.family, result.variant) == ("sd2", "v-prediction")
    unet_only = {k: v for k, v in _ck("sd1").items() if k.startswith("model.diffusion_model.")}
    result = inspect_keys(unet_only)
    assert (result.kind, result.family) == ("checkpoint", "sd1")
    assert any("UNet only" in r for r in result.reasons)


def test_inspect_keys_family_from_text_encoder_when_shapes_unknown():
    for family, marker in (("sd1", "cond_stage_model.transformer"), ("sd2", "cond_stage_model.model"),
                           ("sdxl", "conditioner.embedders.1"), ("sdxl-refiner", "conditioner.embedders.0.model")):
        keys = {k: None for k in sf.checkpoint_tensors(family)}
        result = inspect_keys(keys)
        assert (result.kind, result.family) == ("checkpoint", family), family
        assert any(marker in r for r in result.reasons)


def test_inspect_keys_unknown_says_first_keys():
    result = inspect_keys({"zeta.weight": [3], "alpha.weight": [2], "beta.bias": [1], "gamma": [4]})
    assert result.kind is None and result.family is None
    assert result.reasons == ("no known key pattern; first keys: alpha.weight, beta.bias, gamma",)
    assert inspect_keys({}).reasons == ("no tensors in the file",)


# ====================================================================================================== junk and errors

JUNK = [
    (sf.make_random_bytes, "header length"),
    (sf.make_truncated_header, "truncated"),
    (sf.make_huge_header_length, "limit"),
    (sf.make_truncated_data, "truncated"),
    (sf.make_json_file, "JSON"),
    (sf.make_html_page, "HTML page"),
]


@pytest.mark.parametrize("maker,words", JUNK, ids=[m.__name__ for m, _ in JUNK])
def test_junk_gives_one_line_error_and_unknown_probe(tmp_path, maker, words):
    path = maker(tmp_path / "model.safetensors")
    with pytest.raises(InputError) as err:
        read_safetensors_header(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith("model.safetensors")
    assert words in message
    result = inspect(path)
    assert (result.kind, result.family, result.format) == (None, None, "unknown")
    assert len(result.reasons) == 1 and "\n" not in result.reasons[0]


def test_safetensors_reader_names_other_formats(tmp_path):
    for path, words in ((sf.make_checkpoint(tmp_path / "a.ckpt", "sd1", fmt="ckpt"), "zip archive"),
                        (sf.make_checkpoint(tmp_path / "b.ckpt", "sd1", fmt="legacy"), "Python pickle"),
                        (sf.make_gguf(tmp_path / "c.gguf", {"x": [2]}), "GGUF file")):
        with pytest.raises(InputError, match=words):
            read_safetensors_header(path)


def test_header_over_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", probe.MAX_HEADER_BYTES + 1) + b"{")
        f.truncate(probe.MAX_HEADER_BYTES + 64)  # sparse: the length fits in the file but is over the limit
    with pytest.raises(InputError, match="limit"):
        read_safetensors_header(path)


@pytest.mark.parametrize("header", [b"[1, 2]", b'{"a": {"dtype": "F16", "shape": [2]}}', b"{not json",
                                    b'{"__metadata__": [1]}', b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                    b'{"a": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 0]}}'],
                         ids=["list", "no-offsets", "bad-json", "bad-metadata", "deep-nesting", "negative-dim"])
def test_corrupt_headers(tmp_path, header):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(InputError) as err:
        read_safetensors_header(path)
    assert "\n" not in str(err.value)
    assert inspect(path).kind is None


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_safetensors_header(tmp_path / "nope.safetensors")
    with pytest.raises(InputError, match="no such file"):
        inspect(tmp_path / "nope.safetensors")
    with pytest.raises(InputError, match="folder"):
        read_safetensors_header(tmp_path)
    result = inspect(tmp_path)
    assert result.kind is None and "model_index.json" in result.reasons[0]
    (tmp_path / "empty.bin").write_bytes(b"")
    assert inspect(tmp_path / "empty.bin").reasons == ("the file is empty",)
    os.mkfifo(tmp_path / "pipe.safetensors")
    assert inspect(tmp_path / "pipe.safetensors").reasons == ("pipe.safetensors is not a regular file",)


def test_header_and_metadata_are_returned(tmp_path):
    path = sf.make_lora(tmp_path / "l.safetensors", "sd1", kohya_metadata=True)
    header = read_safetensors_header(path)
    assert header["__metadata__"]["ss_network_module"] == "networks.lora"
    assert header["lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight"]["shape"] == [4, 768]


def test_safetensors_length_that_starts_like_a_pickle(tmp_path):
    # Pad the metadata so that the header length's low byte is 0x80, the pickle PROTO opcode.
    for pad in range(600):
        path = sf.write_safetensors(tmp_path / "e.safetensors", {"emb_params": ("F32", [1, 768])}, {"p": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    result = inspect(path)
    assert (result.kind, result.family, result.format) == ("embedding", "sd1", "safetensors")


# ================================================================================================= reading only headers


class _CountingOpen:
    """Wraps `open` in colab_sd.probe.headers (where probe opens every file); counts the bytes read from them."""

    def __init__(self):
        self.read = 0

    def __call__(self, *args, **kwargs):
        f = builtins.open(*args, **kwargs)
        counter = self
        real_read = f.read

        class Proxy:
            def read(self, n=-1):
                data = real_read(n)
                counter.read += len(data)
                return data

            def __getattr__(self, name):
                return getattr(f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Proxy()


def test_inspect_reads_only_the_header(tmp_path, monkeypatch):
    path = sf.make_checkpoint(tmp_path / "sdxl.safetensors", "sdxl")
    size = path.stat().st_size
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert size > 50 * header_len  # the data section dwarfs the header
    counting = _CountingOpen()
    monkeypatch.setattr(headers, "open", counting, raising=False)
    assert inspect(path).family == "sdxl"
    # one 64-byte sniff, then the length and the header, once
    assert counting.read == 64 + 8 + header_len


@pytest.mark.parametrize("fmt", ["ckpt", "legacy"])
def test_pickle_probe_reads_only_the_pickle(tmp_path, monkeypatch, fmt):
    path = sf.make_checkpoint(tmp_path / "sd1.ckpt", "sd1", fmt=fmt)
    counting = _CountingOpen()
    monkeypatch.setattr(headers, "open", counting, raising=False)
    assert inspect(path).family == "sd1"
    assert 0 < counting.read < path.stat().st_size / 20


def test_gguf_probe_reads_only_its_header(tmp_path, monkeypatch):
    tensors = {k.replace("model.diffusion_model.", ""): v[1] for k, v in sf.checkpoint_tensors("flux").items()}
    path = sf.make_gguf(tmp_path / "flux1-dev-Q4.gguf", tensors, {"general.architecture": "flux"})
    counting = _CountingOpen()
    monkeypatch.setattr(headers, "open", counting, raising=False)
    result = inspect(path)
    assert (result.kind, result.family, result.format) == ("checkpoint", "flux", "gguf")
    assert counting.read < 4096 < path.stat().st_size


def test_gguf_unknown_and_corrupt(tmp_path):
    llm = inspect(sf.make_gguf(tmp_path / "llm.gguf", {"blk.0.attn_q.weight": [64, 64]},
                               {"general.architecture": "llama"}))
    assert (llm.kind, llm.format) == (None, "gguf")
    assert any("'llama'" in r for r in llm.reasons)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0))
    result = inspect(bad)
    assert (result.kind, result.format) == (None, "gguf") and "cannot be read" in result.reasons[0]


# =============================================================================== damaged files never make inspect raise


def _mutations(data: bytes, count: int, seed: int, span: int):
    """`count` copies of `data` with 1-3 random bytes changed in the first `span` bytes, some cut short."""
    rng = random.Random(seed)
    for _ in range(count):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            copy[rng.randrange(min(span, len(copy)))] = rng.randrange(256)
        if rng.random() < 0.15:
            copy = copy[:rng.randrange(5, len(copy))]
        yield bytes(copy)


def test_damaged_files_give_a_probe_never_an_exception(tmp_path):
    marker = tmp_path / "marker"
    sources = {
        "zip": sf.make_embedding(tmp_path / "e.pt", "sd1", fmt="pt"),
        "legacy": sf.make_booby_trapped_ckpt(tmp_path / "evil.ckpt", marker, legacy=True),
        "safetensors": sf.make_lora(tmp_path / "l.safetensors", "sdxl"),
        "gguf": sf.make_gguf(tmp_path / "g.gguf", {"double_blocks.0.img_attn.norm.key_norm.scale": [128]},
                             {"general.architecture": "flux"}),
    }
    target = tmp_path / "damaged.bin"
    kinds = set()
    for seed, (name, path) in enumerate(sources.items()):
        data = path.read_bytes()
        if name != "zip":  # the tensor data after the headers plays no part; keep the copies small
            data = data[:16384]
        for damaged in _mutations(data, 200, seed, 4096):
            target.write_bytes(damaged)
            result = inspect(target)  # must not raise
            assert isinstance(result, Probe) and result.reasons
            kinds.add(result.kind)
    assert not marker.exists()
    assert None in kinds and len(kinds) > 1  # some copies are still readable, some are not


# =========================================================================================== pickles are never executed


@pytest.mark.parametrize("legacy", [False, True])
def test_booby_trapped_pickle_is_not_executed(tmp_path, legacy):
    # The trap is armed: unpickling a SideEffect really creates its marker.
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(sf.SideEffect(armed)))
    assert armed.is_dir()

    marker = tmp_path / "marker"
    result = inspect(sf.make_booby_trapped_ckpt(tmp_path / "evil.ckpt", marker, legacy=legacy))
    assert not marker.exists()
    assert (result.kind, result.family, result.format) == ("checkpoint", "sd1", "pickle")
    assert any("mkdir" in r and "do not load" in r for r in result.reasons)


def test_zip_that_is_not_torch(tmp_path):
    import zipfile
    path = tmp_path / "archive.ckpt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    result = inspect(path)
    assert (result.kind, result.format) == (None, "unknown")
    assert "a zip archive, not a torch model file" in result.reasons[0]


def test_pickled_whole_object_is_not_a_state_dict(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(pickle.dumps(sf.SideEffect(tmp_path / "never"), protocol=4))
    result = inspect(path)
    assert (result.kind, result.format) == (None, "pickle")
    mkdir = f"{os.mkdir.__module__}.mkdir"
    assert result.reasons[-1] == f"it holds a pickled {mkdir} object, not a state dict"
    assert any(mkdir in r and "do not load" in r for r in result.reasons)
    assert not (tmp_path / "never").exists()


def test_truncated_pickle_is_unknown(tmp_path):
    path = sf.make_checkpoint(tmp_path / "m.ckpt", "sd1", fmt="legacy")
    path.write_bytes(path.read_bytes()[:300])
    result = inspect(path)
    assert (result.kind, result.format) == (None, "pickle")


# ==================================================================================================== diffusers folders


@pytest.mark.parametrize("family,variant", [("sd1", None), ("sd2", "v-prediction"), ("sd1", "inpaint"), ("sdxl", None),
                                            ("sdxl-refiner", None), ("sd3", None), ("flux", None)])
def test_diffusers_folder(tmp_path, family, variant):
    result = inspect(sf.make_diffusers_folder(tmp_path / "repo", family, variant))
    assert (result.kind, result.family, result.variant, result.format) == ("checkpoint", family, variant, "diffusers")
    assert "model_index.json" in result.reasons[0]


def test_diffusers_component_folders(tmp_path):
    cn = tmp_path / "controlnet"
    cn.mkdir()
    (cn / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 2048,
                                                "addition_embed_type": "text_time"}))
    assert (inspect(cn).kind, inspect(cn).family, inspect(cn).format) == ("controlnet", "sdxl", "diffusers")
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    assert (inspect(vae).kind, inspect(vae).family) == ("vae", None)


# ================================================================================= the Probe object and the house rules


def test_probe_summary_dict_and_hash(tmp_path):
    result = inspect(sf.make_checkpoint(tmp_path / "m.safetensors", "sdxl"))
    assert result.summary == "SDXL checkpoint (safetensors)"
    assert inspect(sf.make_checkpoint(tmp_path / "i.safetensors", "sd1", "inpaint")).summary == \
        "SD1.x inpaint checkpoint (safetensors)"
    assert inspect(sf.make_lora(tmp_path / "l.safetensors", "sdxl")).summary == "SDXL LoRA (safetensors)"
    assert inspect(sf.make_html_page(tmp_path / "h.safetensors")).summary == "unknown file (unknown)"
    assert json.loads(json.dumps(result.to_dict()))["family"] == "sdxl"
    assert hash(result) == hash(Probe(**{f: getattr(result, f) for f in
                                         ("kind", "family", "variant", "format", "reasons", "metadata")}))
    with pytest.raises(AttributeError):
        result.kind = "lora"  # frozen


def test_every_kind_is_a_library_kind(tmp_path):
    made = [sf.make_checkpoint(tmp_path / "a.safetensors"), sf.make_lora(tmp_path / "b.safetensors"),
            sf.make_vae(tmp_path / "c.safetensors"), sf.make_embedding(tmp_path / "d.safetensors"),
            sf.make_controlnet(tmp_path / "e.safetensors"), sf.make_upscaler(tmp_path / "f.safetensors")]
    kinds = [inspect(p).kind for p in made]
    assert kinds == ["checkpoint", "lora", "vae", "embedding", "controlnet", "upscaler"]
    assert set(kinds) <= set(KINDS)


def test_probe_never_imports_torch(tmp_path):
    path = sf.make_checkpoint(tmp_path / "m.ckpt", "sd1", fmt="ckpt")
    code = ("import colab_sd.probe, sys; assert 'torch' not in sys.modules; "
            f"p = colab_sd.probe.inspect({str(path)!r}); assert p.family == 'sd1', p; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ========================================================================================= the factory's files are real


def _all_factory_safetensors(tmp_path):
    out = []
    for fam in ("sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux"):
        out.append(sf.make_checkpoint(tmp_path / f"ck-{fam}.safetensors", fam))
    out.append(sf.make_checkpoint(tmp_path / "ck-inpaint.safetensors", "sd1", "inpaint"))
    for fam, style in LORA_CASES:
        out.append(sf.make_lora(tmp_path / f"lora-{fam}-{style}.safetensors", fam, style, kohya_metadata=True))
    for fam in ("sd1", "sd2", "sdxl"):
        out.append(sf.make_embedding(tmp_path / f"emb-{fam}.safetensors", fam))
        out.append(sf.make_controlnet(tmp_path / f"cn-{fam}.safetensors", fam))
    out.append(sf.make_vae(tmp_path / "vae.safetensors"))
    out.append(sf.make_vae(tmp_path / "vae-d.safetensors", "diffusers"))
    for arch in ("esrgan", "realesrgan", "swinir", "compact"):
        out.append(sf.make_upscaler(tmp_path / f"up-{arch}.safetensors", arch))
    out.append(sf.write_safetensors(tmp_path / "random.safetensors", {"a": ("F16", [3, 5]), "b": ("I64", [2])},
                                    fill="random"))
    return out


def test_factory_files_load_with_the_real_safetensors_package(tmp_path):
    from safetensors import safe_open

    files = _all_factory_safetensors(tmp_path)
    for path in files:
        header = read_safetensors_header(path)
        with safe_open(str(path), "np") as f:
            assert set(f.keys()) == set(header) - {"__metadata__"}
            assert (f.metadata() or {}) == header.get("__metadata__", {})
            first = sorted(f.keys())[0]
            assert list(f.get_slice(first).get_shape()) == header[first]["shape"]
    with safe_open(str(tmp_path / "random.safetensors"), "np") as f:
        assert f.get_tensor("a").shape == (3, 5) and f.get_tensor("a").dtype.name == "float16"


def test_factory_pickles_load_with_torch_weights_only(tmp_path):
    """The hand-written torch pickles are what torch.save writes: torch itself reads them (in a subprocess,
    so that this test process stays torch-free)."""
    ck = sf.make_checkpoint(tmp_path / "a.ckpt", "sd1", fmt="ckpt")
    legacy = sf.make_checkpoint(tmp_path / "b.ckpt", "sd2", fmt="legacy")
    emb = sf.make_embedding(tmp_path / "c.pt", "sd1", fmt="pt")
    up = sf.make_upscaler(tmp_path / "d.pth", "realesrgan", fmt="pth")
    evil = sf.make_booby_trapped_ckpt(tmp_path / "e.ckpt", tmp_path / "marker")
    code = f"""
import torch
a = torch.load({str(ck)!r}, weights_only=True)
k = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
assert a["state_dict"][k].shape == (320, 768) and a["state_dict"][k].dtype == torch.float16, a["state_dict"][k]
b = torch.load({str(legacy)!r}, weights_only=True)
assert b["state_dict"][k].shape == (320, 1024)
c = torch.load({str(emb)!r}, weights_only=True)
assert c["string_to_param"]["*"].shape == (2, 768)
d = torch.load({str(up)!r}, weights_only=True)
assert d["params_ema"]["conv_first.weight"].shape == (64, 3, 3, 3)
try:
    torch.load({str(evil)!r}, weights_only=True)
except Exception as exc:
    assert "mkdir" in str(exc), exc
else:
    raise AssertionError("weights_only accepted the booby trap")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not (tmp_path / "marker").exists()
