"""Tiny, genuinely valid model files of every kind, written by hand (no torch) for tests.

safetensors: 8-byte little-endian header length, JSON header, then the tensor bytes. Only the tensors whose
names or shapes carry meaning are written, with their real widths (768 / 1024 / 1280 / 2048 …) and small other
dims; the data is zeros written as a sparse file, so a "56 MB" tensor costs nothing.

Torch pickles (.ckpt/.pt/.pth) are written opcode by opcode exactly as `torch.save` lays them out (zip with
`archive/data.pkl` + `archive/data/<n>`, or the legacy stream), so that `torch.load(weights_only=True)` reads
them, without torch being needed to write them.

Use: `from safetensors_factory import make_checkpoint, make_lora, …` (pyproject.toml puts tests/ on pytest's pythonpath).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def write_safetensors(path, tensors: dict, metadata: Optional[dict] = None, fill: str = "zeros", seed: int = 0) -> Path:
    """Write {name: (dtype, shape)} as a valid safetensors file; data is zeros (sparse) or seeded random bytes."""
    path = Path(path)
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        nbytes = _numel(shape) * DTYPE_SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format allows trailing spaces; 8-byte alignment as the real writer does
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        if fill == "random":
            rng = random.Random(seed)
            left = offset
            while left:
                chunk = min(left, 1 << 20)
                f.write(rng.randbytes(chunk))
                left -= chunk
        else:
            f.truncate(8 + len(raw) + offset)  # zeros, as a sparse file
    return path


# ============================================================================================ key layouts

U = "model.diffusion_model."


def _vae_keys(prefix: str = "", latent: int = 4, layout: str = "original", quant: bool = True) -> dict:
    t = {}
    if layout == "diffusers":
        t.update({
            "encoder.conv_in.weight": ("F16", [128, 3, 3, 3]),
            "encoder.down_blocks.0.resnets.0.conv1.weight": ("F16", [128, 128, 3, 3]),
            "encoder.mid_block.attentions.0.to_q.weight": ("F16", [512, 512]),
            "encoder.conv_out.weight": ("F16", [2 * latent, 512, 3, 3]),
            "decoder.conv_in.weight": ("F16", [512, latent, 3, 3]),
            "decoder.up_blocks.0.resnets.0.conv1.weight": ("F16", [512, 512, 3, 3]),
            "decoder.conv_out.weight": ("F16", [3, 128, 3, 3]),
        })
    else:
        t.update({
            "encoder.conv_in.weight": ("F16", [128, 3, 3, 3]),
            "encoder.down.0.block.0.conv1.weight": ("F16", [128, 128, 3, 3]),
            "encoder.mid.attn_1.q.weight": ("F16", [512, 512, 1, 1]),
            "encoder.conv_out.weight": ("F16", [2 * latent, 512, 3, 3]),
            "decoder.conv_in.weight": ("F16", [512, latent, 3, 3]),
            "decoder.up.3.block.0.conv1.weight": ("F16", [512, 512, 3, 3]),
            "decoder.conv_out.weight": ("F16", [3, 128, 3, 3]),
        })
    if quant:
        t["quant_conv.weight"] = ("F16", [2 * latent, 2 * latent, 1, 1])
        t["post_quant_conv.weight"] = ("F16", [latent, latent, 1, 1])
    return {prefix + k: v for k, v in t.items()}


def _sd_unet(ctx: int, in_channels: int = 4, ch: int = 320, xl: bool = False, label: Optional[int] = None) -> dict:
    t = {
        U + "input_blocks.0.0.weight": ("F16", [ch, in_channels, 3, 3]),
        U + "input_blocks.0.0.bias": ("F16", [ch]),
        U + "time_embed.0.weight": ("F16", [4 * ch, ch]),
        U + "out.2.weight": ("F16", [4, ch, 3, 3]),
    }
    if xl:  # SDXL: no attention at the first level; 2 then 10 transformer blocks per attention
        t[U + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"] = ("F16", [2 * ch, ctx])
        t[U + "input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight"] = ("F16", [2 * ch, ctx])
        t[U + "output_blocks.8.0.skip_connection.weight"] = ("F16", [2 * ch, 3 * ch, 1, 1])
    else:
        t[U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"] = ("F16", [ch, ch])
        t[U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = ("F16", [ch, ctx])
        t[U + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"] = ("F16", [ch, ctx])
        t[U + "output_blocks.11.0.skip_connection.weight"] = ("F16", [ch, 2 * ch, 1, 1])
    if label:
        t[U + "label_emb.0.0.weight"] = ("F16", [4 * ch, label])
    return t


_CLIP_L = "text_model.embeddings.position_embedding.weight"


def checkpoint_tensors(family: str = "sd1", variant: Optional[str] = None, prefix: bool = True,
                       with_vae: bool = True, token_embedding: bool = True) -> dict:
    """The meaningful keys of a whole single-file checkpoint of `family` (original layout)."""
    in_ch = {"inpaint": 9, "instruct-pix2pix": 8}.get(variant or "", 4)
    t: dict = {}
    if family == "sd1":
        t.update(_sd_unet(768, in_ch))
        t["cond_stage_model.transformer." + _CLIP_L] = ("F16", [77, 768])
        t["cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.k_proj.weight"] = ("F16", [768, 768])
        if token_embedding:
            t["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = ("F16", [49408, 768])
    elif family == "sd2":
        t.update(_sd_unet(1024, in_ch))
        t["cond_stage_model.model.positional_embedding"] = ("F16", [77, 1024])
        t["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = ("F16", [3072, 1024])
        if token_embedding:
            t["cond_stage_model.model.token_embedding.weight"] = ("F16", [49408, 1024])
    elif family == "sdxl":
        t.update(_sd_unet(2048, in_ch, xl=True, label=2816))
        t["conditioner.embedders.0.transformer." + _CLIP_L] = ("F16", [77, 768])
        t["conditioner.embedders.1.model.positional_embedding"] = ("F16", [77, 1280])
        t["conditioner.embedders.1.model.text_projection"] = ("F16", [1280, 1280])
        t["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"] = ("F16", [1280])
    elif family == "sdxl-refiner":
        t.update(_sd_unet(1280, in_ch, ch=384, xl=True, label=2560))
        t["conditioner.embedders.0.model.positional_embedding"] = ("F16", [77, 1280])
        t["conditioner.embedders.0.model.text_projection"] = ("F16", [1280, 1280])
        t["conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"] = ("F16", [1280])
    elif family == "sd3":
        t.update({
            U + "joint_blocks.0.context_block.adaLN_modulation.1.bias": ("F16", [9216]),
            U + "joint_blocks.0.x_block.attn.qkv.weight": ("F16", [4608, 1536]),
            U + "joint_blocks.23.x_block.mlp.fc1.weight": ("F16", [6144, 1536]),
            U + "x_embedder.proj.weight": ("F16", [1536, 16, 2, 2]),
            "text_encoders.clip_l.transformer." + _CLIP_L: ("F16", [77, 768]),
            "text_encoders.clip_g.transformer." + _CLIP_L: ("F16", [77, 1280]),
        })
        t.update(_vae_keys("first_stage_model.", latent=16, quant=False) if with_vae else {})
        with_vae = False
    elif family == "flux":
        p = U if prefix else ""
        t.update({
            p + "img_in.weight": ("BF16", [3072, 384 if variant == "inpaint" else 64]),
            p + "time_in.in_layer.weight": ("BF16", [3072, 256]),
            p + "double_blocks.0.img_attn.norm.key_norm.scale": ("BF16", [128]),
            p + "double_blocks.0.img_attn.qkv.weight": ("BF16", [9216, 3072]),
            p + "double_blocks.18.txt_mlp.2.bias": ("BF16", [3072]),
            p + "single_blocks.0.norm.key_norm.scale": ("BF16", [128]),
            p + "single_blocks.37.linear2.bias": ("BF16", [3072]),
            p + "final_layer.linear.weight": ("BF16", [64, 3072]),
        })
        if variant != "schnell":
            t[p + "guidance_in.in_layer.weight"] = ("BF16", [3072, 256])
        with_vae = False  # Flux files are usually the transformer alone
    else:
        raise ValueError(f"no checkpoint layout for family {family!r}")
    if variant == "v-prediction":
        t["v_pred"] = ("F32", [])
    if with_vae:
        t.update(_vae_keys("first_stage_model."))
    return t


def make_checkpoint(path, family: str = "sd1", variant: Optional[str] = None, fmt: str = "safetensors",
                    metadata: Optional[dict] = None, prefix: bool = True) -> Path:
    """A whole checkpoint of `family` ("sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux"); variant "inpaint",
    "instruct-pix2pix", "v-prediction", "schnell" (flux); fmt "safetensors", "ckpt" (torch zip) or "legacy"."""
    if fmt == "safetensors":
        return write_safetensors(path, checkpoint_tensors(family, variant, prefix=prefix), metadata)
    tensors = checkpoint_tensors(family, variant, prefix=prefix, token_embedding=False)
    obj = {"epoch": 6, "global_step": 470000,
           "state_dict": {k: TensorSpec(*v) for k, v in tensors.items()}}
    return write_torch(path, obj, legacy=(fmt == "legacy"))


# ------------------------------------------------------------------------------------------------ LoRA

# family → [(kohya stem, diffusers module path, in_features, out_features)] for unet / te1 / te2
def _te(layer: int, width: int) -> tuple:
    """A text-encoder k_proj target: (kohya stem, module path, in, out)."""
    module = f"text_model.encoder.layers.{layer}.self_attn.k_proj"
    return module.replace(".", "_"), module, width, width


_LORA_TARGETS = {
    "sd1": {
        "unet": [("down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
                  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 768, 320),
                 ("down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 320, 320)],
        "te": [_te(0, 768)],
    },
    "sd2": {
        "unet": [("down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
                  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 1024, 320)],
        "te": [_te(22, 1024)],
    },
    "sdxl": {
        "unet": [("input_blocks_4_1_transformer_blocks_1_attn2_to_k",
                  "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", 2048, 640),
                 ("input_blocks_7_1_transformer_blocks_9_attn1_to_q",
                  "down_blocks.2.attentions.0.transformer_blocks.9.attn1.to_q", 1280, 1280)],
        "te1": [_te(0, 768)],
        "te2": [_te(0, 1280)],
    },
    "flux": {
        "unet": [("double_blocks_0_img_attn_qkv", "transformer_blocks.0.attn.to_k", 3072, 3072),
                 ("single_blocks_0_linear1", "single_transformer_blocks.0.attn.to_k", 3072, 3072)],
    },
    "sd3": {
        "unet": [("joint_blocks_0_x_block_attn_qkv", "transformer_blocks.0.attn.to_k", 1536, 1536)],
    },
}
_KOHYA_BASE = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", "flux": "flux1", "sd3": "sd3"}


def lora_tensors(family: str = "sd1", style: str = "kohya", rank: int = 4) -> dict:
    """LoRA keys for `family` in `style`: kohya, locon, loha, lokr, dora, diffusers, peft."""
    targets = _LORA_TARGETS[family]
    dit = family in ("flux", "sd3")
    t: dict = {}
    for part, items in targets.items():
        for stem, module, fan_in, fan_out in items:
            if style in ("diffusers", "peft"):
                root = {"unet": "transformer." if dit else "unet.", "te": "text_encoder.", "te1": "text_encoder.",
                        "te2": "text_encoder_2."}[part] + module
                if style == "diffusers":
                    t[root + ".lora.down.weight"] = ("F16", [rank, fan_in])
                    t[root + ".lora.up.weight"] = ("F16", [fan_out, rank])
                else:
                    t[root + ".lora_A.weight"] = ("F16", [rank, fan_in])
                    t[root + ".lora_B.weight"] = ("F16", [fan_out, rank])
                continue
            name = {"unet": "lora_unet_", "te": "lora_te_", "te1": "lora_te1_", "te2": "lora_te2_"}[part] + stem
            t[name + ".alpha"] = ("F32", [])
            if style == "loha":
                t[name + ".hada_w1_a"] = ("F16", [fan_out, rank])
                t[name + ".hada_w1_b"] = ("F16", [rank, fan_in])
                t[name + ".hada_w2_a"] = ("F16", [fan_out, rank])
                t[name + ".hada_w2_b"] = ("F16", [rank, fan_in])
            elif style == "lokr":
                t[name + ".lokr_w1"] = ("F16", [4, 8])
                t[name + ".lokr_w2"] = ("F16", [fan_out // 4, fan_in // 8])
            else:
                t[name + ".lora_down.weight"] = ("F16", [rank, fan_in])
                t[name + ".lora_up.weight"] = ("F16", [fan_out, rank])
                if style == "dora":
                    t[name + ".dora_scale"] = ("F16", [1, fan_in])
    if style == "locon" and not dit:
        name = "lora_unet_down_blocks_0_resnets_0_conv1"
        t[name + ".lora_down.weight"] = ("F16", [rank, 320, 3, 3])
        t[name + ".lora_up.weight"] = ("F16", [320, rank, 1, 1])
        t[name + ".alpha"] = ("F32", [])
    return t


def make_lora(path, family: str = "sd1", style: str = "kohya", metadata: Optional[dict] = None,
              kohya_metadata: bool = False) -> Path:
    """A LoRA for `family` ("sd1", "sd2", "sdxl", "flux", "sd3") in `style` (see `lora_tensors`)."""
    meta = dict(metadata or {})
    if kohya_metadata:
        meta.setdefault("ss_base_model_version", _KOHYA_BASE[family])
        if style in ("loha", "lokr"):
            meta.setdefault("ss_network_module", "lycoris.kohya")
            meta.setdefault("ss_network_args", json.dumps({"algo": style}))
        else:
            meta.setdefault("ss_network_module", "networks.lora")
    return write_safetensors(path, lora_tensors(family, style), meta or None)


# ------------------------------------------------------------------------------------------------ others


def make_embedding(path, family: str = "sd1", fmt: str = "safetensors", vectors: int = 2) -> Path:
    """A textual-inversion embedding: emb_params (sd1 768 / sd2 1024), clip_l + clip_g (sdxl); fmt "pt" writes
    the A1111 torch pickle ({"string_to_param": {"*": tensor}, …})."""
    width = {"sd1": 768, "sd2": 1024}.get(family)
    if fmt == "pt":
        obj = {"string_to_token": {"*": 265}, "string_to_param": {"*": TensorSpec("F32", [vectors, width])},
               "name": Path(path).stem, "step": 1000, "sd_checkpoint": "81761151", "sd_checkpoint_name": "base"}
        return write_torch(path, obj)
    if family == "sdxl":
        tensors = {"clip_g": ("F32", [vectors, 1280]), "clip_l": ("F32", [vectors, 768])}
    else:
        tensors = {"emb_params": ("F32", [vectors, width])}
    return write_safetensors(path, tensors)


def make_vae(path, layout: str = "original", latent_channels: int = 4, metadata: Optional[dict] = None) -> Path:
    """A standalone VAE (original or diffusers layout); 16 latent channels makes an SD3/Flux-style VAE."""
    return write_safetensors(path, _vae_keys("", latent_channels, layout, quant=latent_channels == 4), metadata)


def controlnet_tensors(family: str = "sd1", layout: str = "original") -> dict:
    ctx = {"sd1": 768, "sd2": 1024, "sdxl": 2048}[family]
    if layout == "diffusers":
        t = {
            "conv_in.weight": ("F16", [320, 4, 3, 3]),
            "controlnet_cond_embedding.conv_in.weight": ("F16", [16, 3, 3, 3]),
            "controlnet_down_blocks.0.weight": ("F16", [320, 320, 1, 1]),
            "controlnet_mid_block.weight": ("F16", [1280, 1280, 1, 1]),
        }
        if family == "sdxl":
            t["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"] = ("F16", [640, ctx])
            t["add_embedding.linear_1.weight"] = ("F16", [1280, 2816])
        else:
            t["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"] = ("F16", [320, ctx])
        return t
    p = "control_model."
    return {
        p + "input_hint_block.0.weight": ("F16", [16, 3, 3, 3]),
        p + "zero_convs.0.0.weight": ("F16", [320, 320, 1, 1]),
        p + "time_embed.0.weight": ("F16", [1280, 320]),
        p + "input_blocks.0.0.weight": ("F16", [320, 4, 3, 3]),
        p + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", [320, ctx]),
        p + "middle_block_out.0.weight": ("F16", [1280, 1280, 1, 1]),
    }


def make_controlnet(path, family: str = "sd1", layout: Optional[str] = None) -> Path:
    """A ControlNet: original layout (control_model.*) for sd1/sd2, diffusers layout for sdxl by default."""
    layout = layout or ("diffusers" if family == "sdxl" else "original")
    return write_safetensors(path, controlnet_tensors(family, layout))


def upscaler_tensors(arch: str = "esrgan") -> dict:
    """ESRGAN-family keys: "esrgan" (old model.N layout), "realesrgan" (RRDBNet), "swinir", "compact"."""
    if arch == "esrgan":
        t = {"model.0.weight": ("F32", [64, 3, 3, 3]), "model.0.bias": ("F32", [64])}
        for i in (0, 22):
            t[f"model.1.sub.{i}.RDB1.conv1.0.weight"] = ("F32", [32, 64, 3, 3])
        t.update({"model.1.sub.23.weight": ("F32", [64, 64, 3, 3]), "model.3.weight": ("F32", [64, 64, 3, 3]),
                  "model.6.weight": ("F32", [64, 64, 3, 3]), "model.8.weight": ("F32", [3, 64, 3, 3])})
        return t
    if arch == "realesrgan":
        return {"conv_first.weight": ("F32", [64, 3, 3, 3]), "body.0.rdb1.conv1.weight": ("F32", [32, 64, 3, 3]),
                "body.22.rdb3.conv5.weight": ("F32", [64, 160, 3, 3]), "conv_body.weight": ("F32", [64, 64, 3, 3]),
                "conv_up1.weight": ("F32", [64, 64, 3, 3]), "conv_up2.weight": ("F32", [64, 64, 3, 3]),
                "conv_hr.weight": ("F32", [64, 64, 3, 3]), "conv_last.weight": ("F32", [3, 64, 3, 3])}
    if arch == "swinir":
        return {"conv_first.weight": ("F32", [180, 3, 3, 3]),
                "layers.0.residual_group.blocks.0.attn.relative_position_bias_table": ("F32", [225, 6]),
                "layers.0.conv.weight": ("F32", [180, 180, 3, 3]), "conv_after_body.weight": ("F32", [180, 180, 3, 3]),
                "conv_last.weight": ("F32", [3, 64, 3, 3])}
    if arch == "compact":
        t = {"body.0.weight": ("F32", [64, 3, 3, 3]), "body.0.bias": ("F32", [64])}
        for i in range(1, 6, 2):
            t[f"body.{i}.weight"] = ("F32", [64])
            t[f"body.{i + 1}.weight"] = ("F32", [64, 64, 3, 3])
            t[f"body.{i + 1}.bias"] = ("F32", [64])
        return t
    raise ValueError(f"no upscaler layout {arch!r}")


def make_upscaler(path, arch: str = "esrgan", fmt: str = "safetensors") -> Path:
    """An upscaler; fmt "pth" writes the torch zip pickle ({"params_ema": state_dict} for realesrgan)."""
    tensors = upscaler_tensors(arch)
    if fmt == "safetensors":
        return write_safetensors(path, tensors)
    state = {k: TensorSpec(*v) for k, v in tensors.items()}
    return write_torch(path, {"params_ema": state} if arch == "realesrgan" else state, legacy=(fmt == "legacy"))


# ------------------------------------------------------------------------------------------------ junk


def make_random_bytes(path, size: int = 4096, seed: int = 1) -> Path:
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = 0x11  # not a pickle PROTO byte, not "PK", not "GGUF"
    Path(path).write_bytes(bytes(data))
    return Path(path)


def make_truncated_header(path) -> Path:
    """A header length of 4,000 bytes followed by only a fragment of the JSON."""
    body = b'{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}'
    Path(path).write_bytes(struct.pack("<Q", 4000) + body)
    return Path(path)


def make_huge_header_length(path) -> Path:
    """A length field of ~1 TB: must be refused before any allocation."""
    Path(path).write_bytes(struct.pack("<Q", 1 << 40) + b'{"a":1}' + b"\0" * 64)
    return Path(path)


def make_truncated_data(path) -> Path:
    """A valid header whose tensor data was cut short (an interrupted download)."""
    write_safetensors(path, {"emb_params": ("F32", [2, 768])}, fill="random")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    return Path(path)


def make_json_file(path) -> Path:
    Path(path).write_text(json.dumps({"error": "Unauthorized", "message": "You must be logged in to download"}))
    return Path(path)


def make_html_page(path) -> Path:
    Path(path).write_text("<!DOCTYPE html>\n<html><head><title>Sign in | Civitai</title></head>"
                          "<body><form action='/login'>Log in to download</form></body></html>\n")
    return Path(path)


def make_plain_pickle_ckpt(path, names) -> Path:
    """A zip `.ckpt` holding `pickle.dumps` of {"state_dict": {name: placeholder}} (plain objects, no torch)."""
    data = pickle.dumps({"state_dict": {n: (i, "placeholder") for i, n in enumerate(names)}, "global_step": 1},
                        protocol=2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/version", "3\n")
    return Path(path)


class SideEffect:
    """Unpickling this creates `marker` (a folder): proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def make_booby_trapped_ckpt(path, marker, family: str = "sd1", legacy: bool = False) -> Path:
    """A torch-layout checkpoint whose pickle also calls os.mkdir(marker) when it is loaded."""
    tensors = checkpoint_tensors(family, token_embedding=False, with_vae=False)
    obj = {"state_dict": {k: TensorSpec(*v) for k, v in tensors.items()}, "hook": SideEffect(marker)}
    return write_torch(path, obj, legacy=legacy)


# ------------------------------------------------------------------------------------------------ GGUF


def make_gguf(path, tensors: dict, kv: Optional[dict] = None) -> Path:
    """A GGUF v3 file: {name: torch-order shape} as F16 tensors, string key/values, zero data (sparse)."""
    def s(text: str) -> bytes:
        raw = text.encode("utf-8")
        return struct.pack("<Q", len(raw)) + raw

    kv = dict(kv or {})
    out = io.BytesIO()
    out.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, value in kv.items():
        out.write(s(key) + struct.pack("<I", 8) + s(str(value)))
    offset = 0
    for name, shape in tensors.items():
        dims = list(reversed(shape))
        out.write(s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims))
        out.write(struct.pack("<IQ", 1, offset))
        offset += _numel(shape) * 2
        offset += -offset % 32
    header = out.getvalue()
    header += b"\0" * (-len(header) % 32)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + offset)
    return Path(path)


# ------------------------------------------------------------------------------------------------ diffusers folders


def make_diffusers_folder(path, family: str = "sd1", variant: Optional[str] = None) -> Path:
    """A diffusers pipeline folder's configs (no weights): model_index.json, unet, text encoder, scheduler."""
    path = Path(path)
    classes = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
               "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline", "flux": "FluxPipeline",
               "sd3": "StableDiffusion3Pipeline"}
    cls = classes[family]
    if variant == "inpaint" and family in ("sd1", "sd2"):
        cls = "StableDiffusionInpaintPipeline"
    index = {"_class_name": cls, "_diffusers_version": "0.30.0",
             "scheduler": ["diffusers", "EulerDiscreteScheduler"], "vae": ["diffusers", "AutoencoderKL"]}
    if family in ("sd1", "sd2", "sdxl", "sdxl-refiner"):
        index["unet"] = ["diffusers", "UNet2DConditionModel"]
        index["text_encoder"] = ["transformers", "CLIPTextModel"]
        if family == "sdxl":
            index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        if family == "sdxl-refiner":
            index["text_encoder"] = [None, None]
            index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        width = {"sd1": 768, "sd2": 1024, "sdxl": 2048, "sdxl-refiner": 1280}[family]
        unet = {"_class_name": "UNet2DConditionModel", "cross_attention_dim": width,
                "in_channels": 9 if variant == "inpaint" else 4}
        _write_json(path / "unet" / "config.json", unet)
        if family in ("sd1", "sd2"):
            _write_json(path / "text_encoder" / "config.json",
                        {"architectures": ["CLIPTextModel"], "hidden_size": width})
    else:
        index["transformer"] = ["diffusers", "FluxTransformer2DModel" if family == "flux" else "SD3Transformer2DModel"]
    scheduler = {"_class_name": "EulerDiscreteScheduler",
                 "prediction_type": "v_prediction" if variant == "v-prediction" else "epsilon"}
    _write_json(path / "scheduler" / "scheduler_config.json", scheduler)
    _write_json(path / "model_index.json", index)
    return path


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


# ============================================================================================ torch pickles


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to write into a torch pickle: dtype (safetensors names) and shape; data is zeros."""

    dtype: str
    shape: tuple

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))  # lists welcome


_STORAGE = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage", "F64": "DoubleStorage",
            "I64": "LongStorage", "I32": "IntStorage", "U8": "ByteStorage", "BOOL": "BoolStorage"}


class _TorchPickler:
    """Emits protocol-2 opcodes for dict/list/tuple/str/int/float/bool/None and TensorSpec, like torch.save."""

    def __init__(self, legacy: bool):
        self.legacy = legacy
        self.storages: list[TensorSpec] = []
        self.out = bytearray(b"\x80\x02")

    def dump(self, obj) -> bytes:
        self._emit(obj)
        self.out += b"."
        return bytes(self.out)

    def _str(self, text: str):
        raw = text.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def _int(self, n: int):
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)
        elif -(1 << 31) <= n < (1 << 31):
            self.out += b"J" + struct.pack("<i", n)
        else:
            raw = pickle.encode_long(n)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def _emit(self, obj):
        if obj is None:
            self.out += b"N"
        elif obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            self.out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            self._str(obj)
        elif isinstance(obj, TensorSpec):
            self._tensor(obj)
        elif isinstance(obj, dict):
            self.out += b"}"
            if obj:
                self.out += b"("
                for key, value in obj.items():
                    self._emit(key)
                    self._emit(value)
                self.out += b"u"
        elif isinstance(obj, list):
            self.out += b"]"
            if obj:
                self.out += b"("
                for item in obj:
                    self._emit(item)
                self.out += b"e"
        elif isinstance(obj, tuple):
            self.out += b"("
            for item in obj:
                self._emit(item)
            self.out += b"t"
        else:  # anything else goes through the real pickler's __reduce__ (used for the booby trap)
            raw = pickle.dumps(obj, protocol=2)
            body = raw[2:-1]  # drop PROTO 2 and STOP; memo indexes are private to that fragment
            self.out += body

    def _tensor(self, spec: TensorSpec):
        key = str(len(self.storages))
        self.storages.append(spec)
        numel = _numel(spec.shape)
        self.out += b"ctorch._utils\n_rebuild_tensor_v2\n("
        # persistent id, as torch.save writes it
        self.out += b"("
        self._str("storage")
        self.out += b"ctorch\n" + _STORAGE[spec.dtype].encode() + b"\n"
        self._str(key)
        self._str("cpu")
        self._int(numel)
        if self.legacy:
            self.out += b"N"  # view_metadata
        self.out += b"tQ"
        self._int(0)
        self._emit(tuple(spec.shape))
        stride, acc = [], 1
        for d in reversed(spec.shape):
            stride.append(acc)
            acc *= d
        self._emit(tuple(reversed(stride)))
        self.out += b"\x89ccollections\nOrderedDict\n)RtR"


def write_torch(path, obj, legacy: bool = False) -> Path:
    """Write `obj` (dicts of TensorSpec …) as torch.save would: zip format, or the legacy stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pickler = _TorchPickler(legacy)
    data = pickler.dump(obj)
    if legacy:
        with open(path, "wb") as f:
            f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
            f.write(pickle.dumps(1001, protocol=2))
            f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                  "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
            f.write(data)
            f.write(pickle.dumps([str(i) for i in range(len(pickler.storages))], protocol=2))
            for spec in pickler.storages:
                numel = _numel(spec.shape)
                f.write(struct.pack("<q", numel))
                f.write(b"\0" * (numel * DTYPE_SIZES[spec.dtype]))
        return path
    name = "archive"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/data.pkl", data)
        zf.writestr(f"{name}/byteorder", "little")
        for i, spec in enumerate(pickler.storages):
            zf.writestr(f"{name}/data/{i}", b"\0" * (_numel(spec.shape) * DTYPE_SIZES[spec.dtype]))
        zf.writestr(f"{name}/version", "3\n")
    return path
