"""Transformer (DiT) families the UNet rules do not cover, from key names and shapes alone.

Z-Image, Flux.2 (Klein 4B / 9B / dev by the text-input width), Qwen-Image, HiDream, and the diffusers-layout files
of Flux, Chroma and SD3 (bare `transformer_blocks.*` keys, as diffusers saves them); SD3 variants by depth and
`attn2`; quantization markers (ComfyUI scaled fp8, bitsandbytes NF4 bundles, nunchaku). Marker keys and widths
from the families reference §1 (ComfyUI `model_detection.py`, InvokeAI `flux2_variant.py`, diffusers
`single_file_utils.py`). Pure functions; `rules._diffusion_model` calls `dit_verdict` first.
"""
from __future__ import annotations

from typing import Callable, Optional

# Flux.2: txt_in / context_embedder width = 3 × the text encoder's (InvokeAI configs/flux2_variant.py)
_FLUX2_WIDTH = {7680: "klein-4b", 12288: "klein-9b", 15360: "dev"}


def _prefix(keys, *prefixes) -> bool:
    return any(k.startswith(prefixes) for k in keys)


def dit_verdict(inner: dict, shapes: dict, make: Callable, where: str = ""):
    """A Verdict (built with `make(kind, family, variant)`) for a DiT family, or None.

    `inner` maps the keys without `model.diffusion_model.` to the file's keys; `shapes` is keyed by the latter.
    """
    def dim(key, index):
        shape = shapes.get(inner.get(key, ""))
        return shape[index] if isinstance(shape, (list, tuple)) and len(shape) > index else None

    keys = inner.keys()
    if "double_stream_modulation_img.lin.weight" in inner or "double_stream_modulation_img.linear.weight" in inner:
        width = dim("txt_in.weight", 1) or dim("context_embedder.weight", 1)
        variant = _FLUX2_WIDTH.get(width)
        v = make("checkpoint", "flux2", variant).why(f"has {where}double_stream_modulation_img → Flux.2")
        return v.why(f"text input {width} wide → {variant}" if variant else
                     f"text input {width} wide: not a released size; Klein 4B assumed")
    if ("x_pad_token" in inner or "cap_pad_token" in inner) and _prefix(keys, "context_refiner.", "noise_refiner."):
        return make("checkpoint", "zimage", None).why(
            f"has {where}cap_pad_token / x_pad_token + context_refiner (NextDiT with pad tokens) → Z-Image")
    if "txt_norm.weight" in inner and _prefix(keys, "transformer_blocks.") and "img_in.weight" in inner:
        return make("checkpoint", "qwen-image", None).why(f"has {where}txt_norm + img_in + transformer_blocks → Qwen-Image")
    if _prefix(keys, "double_stream_blocks.") and _prefix(keys, "caption_projection."):
        return make("checkpoint", "hidream", None).why("has double_stream_blocks + caption_projection → HiDream-I1")
    if _prefix(keys, "transformer_blocks.") and _prefix(keys, "single_transformer_blocks.") and "x_embedder.weight" in inner:
        if _prefix(keys, "distilled_guidance_layer."):
            return make("checkpoint", "chroma", None).why("diffusers-layout transformer with distilled_guidance_layer → Chroma")
        v = make("checkpoint", "flux", None).why("diffusers-layout transformer_blocks + single_transformer_blocks → Flux")
        if not _prefix(keys, "time_text_embed.guidance_embedder."):
            v.variant = "schnell"
            v.why("no guidance_embedder (no distilled guidance) → Flux schnell")
        return v
    if _prefix(keys, "transformer_blocks.") and "pos_embed.proj.weight" in inner and "context_embedder.weight" in inner:
        v = make("checkpoint", "sd3", None).why("diffusers-layout transformer_blocks + pos_embed + context_embedder → SD3")
        return sd3_variant(v, inner, "transformer_blocks", "attn2.")
    return None


def sd3_variant(verdict, inner: dict, blocks: str, attn2: str):
    """SD3 medium / SD3.5 medium / SD3.5 large from depth and the second attention (MMDiT-X)."""
    depth = 1 + max((int(k.split(".")[1]) for k in inner if k.startswith(blocks + ".") and k.split(".")[1].isdigit()),
                    default=-1)
    if depth >= 38:
        verdict.variant = "3.5-large"
        return verdict.why(f"{depth} joint blocks → SD3.5 Large (or Large Turbo)")
    if any(attn2 in k for k in inner if k.startswith(blocks + ".")):
        verdict.variant = "3.5-medium"
        return verdict.why("blocks with a second attention (MMDiT-X) → SD3.5 Medium")
    return verdict.why(f"{depth} joint blocks, no second attention → SD3 Medium")


def quant_notes(keys) -> list[str]:
    """Reasons naming how the weights are quantized, from marker keys (not dtypes: the probe has shapes only)."""
    notes = []
    keys = list(keys)
    if any(k.endswith("quant_state.bitsandbytes__nf4") or k.endswith("quant_state.bitsandbytes__fp4") for k in keys):
        notes.append("bitsandbytes NF4 bundle (prequantized): diffusers cannot load it; use a GGUF (Q4_K_M / Q5_K_M) "
                     "of the same model instead")
    if any(k == "scaled_fp8" or k.endswith(".scale_weight") for k in keys):
        notes.append("ComfyUI scaled fp8 (scaled_fp8 + per-layer scale_weight): each weight needs its scale")
    elif any(k.endswith(".comfy_quant") or k.endswith(".weight_scale") for k in keys):
        notes.append("ComfyUI quantized layers (comfy_quant / weight_scale): each weight needs its scale")
    if any(k.endswith(".qweight") for k in keys):
        notes.append("nunchaku SVDQuant weights (qweight): not loadable by diffusers' single-file loader")
    return notes


def text_encoder_verdict(shapes: dict, make: Callable) -> Optional[object]:
    """T5 / CLIP-L / CLIP-G / Qwen3 text encoders stored alone → kind "text_encoder" with the architecture."""
    def first(*names):
        for name in names:
            if isinstance(shapes.get(name), (list, tuple)):
                return shapes[name]
        return None

    keys = shapes.keys()
    qwen = first("model.embed_tokens.weight", "embed_tokens.weight")
    if qwen and any(".self_attn.q_norm." in k for k in keys):
        return make("text_encoder", None, "qwen3").why(f"a Qwen3 text encoder alone ({qwen[-1]} wide) → text encoder")
    if "shared.weight" in shapes and _prefix(keys, "encoder.block."):
        width = first("shared.weight")
        return make("text_encoder", None, "t5-xxl").why(
            f"a T5 text encoder alone (shared + encoder.block.*{f', {width[-1]} wide' if width else ''}) → text encoder")
    if _prefix(keys, "text_model.encoder.layers.", "text_model.embeddings."):
        width = first("text_model.embeddings.token_embedding.weight")
        arch = "clip-g" if width and width[-1] >= 1280 else "clip-l"
        return make("text_encoder", None, arch).why(
            f"a CLIP text encoder alone{f' ({width[-1]} wide)' if width else ''} → text encoder")
    return None


def folder_variant(family: str, cls: str, transformer: dict) -> tuple[Optional[str], str]:
    """(variant, why) of a diffusers folder from its pipeline class and transformer config."""
    if family == "flux":
        if "Kontext" in cls:
            return "kontext", f"{cls} → Kontext"
        if transformer.get("guidance_embeds") is False:
            return "schnell", "transformer guidance_embeds is false → Flux schnell"
        return None, ""
    if family == "flux2":
        if cls == "Flux2Pipeline":
            return "dev", "Flux2Pipeline → Flux.2 dev"
        width = transformer.get("joint_attention_dim")
        variant = _FLUX2_WIDTH.get(width, "klein-4b")
        return variant, f"transformer joint_attention_dim {width} → {variant}"
    if family == "sd3":
        if (transformer.get("num_layers") or 0) >= 38:
            return "3.5-large", f"{transformer['num_layers']} transformer layers → SD3.5 Large"
        if transformer.get("dual_attention_layers"):
            return "3.5-medium", "dual_attention_layers (MMDiT-X) → SD3.5 Medium"
    return None, ""
