"""Tiny SD3 and Flux.2 Klein transformers in the *released* key layout (Stability's `sd3.5_medium.safetensors`,
BFL's `flux-2-klein-4b.safetensors`, ComfyUI's split files), written from a diffusers model.

Each function is the reverse of diffusers' single-file converter for that family
(`convert_sd3_transformer_checkpoint_to_diffusers`, `convert_flux2_transformer_checkpoint_to_diffusers`); the tests
check the round trip through diffusers' own converter is exact, so these files are what a user's download holds.
Flux.1 and Chroma have no tiny original layout: their converters hard-wire the released widths (families.md §2).
"""
from __future__ import annotations

import re

import torch


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """diffusers keeps AdaLN (scale, shift); the released files (shift, scale). The swap is its own inverse."""
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


# ---------------------------------------------------------------------------------------------- SD3 / SD3.5

_SD3_TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj.": "x_embedder.proj.",
    "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
    "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.",
    "context_embedder.": "context_embedder.",
    "proj_out.": "final_layer.linear.",
}
_SD3_BLOCK = {  # diffusers name inside transformer_blocks.N → released name inside joint_blocks.N
    "attn.norm_q.": "x_block.attn.ln_q.", "attn.norm_k.": "x_block.attn.ln_k.",
    "attn.norm_added_q.": "context_block.attn.ln_q.", "attn.norm_added_k.": "context_block.attn.ln_k.",
    "attn.to_out.0.": "x_block.attn.proj.", "attn.to_add_out.": "context_block.attn.proj.",
    "attn2.norm_q.": "x_block.attn2.ln_q.", "attn2.norm_k.": "x_block.attn2.ln_k.",
    "attn2.to_out.0.": "x_block.attn2.proj.",
    "norm1.linear.": "x_block.adaLN_modulation.1.", "norm1_context.linear.": "context_block.adaLN_modulation.1.",
    "ff.net.0.proj.": "x_block.mlp.fc1.", "ff.net.2.": "x_block.mlp.fc2.",
    "ff_context.net.0.proj.": "context_block.mlp.fc1.", "ff_context.net.2.": "context_block.mlp.fc2.",
}
_SD3_QKV = {"attn.to_": "x_block.attn.qkv", "attn.add_": "context_block.attn.qkv", "attn2.to_": "x_block.attn2.qkv"}


def sd3_to_original(sd: dict, prefix: str = "") -> dict:
    """An SD3Transformer2DModel state dict → the released MMDiT layout (`joint_blocks.N.x_block…`, fused qkv,
    AdaLN halves swapped where diffusers swaps them); `prefix` "model.diffusion_model." gives a whole-checkpoint
    file's keys."""
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    out, qkv = {}, {}
    for key, value in sd.items():
        if key.startswith("norm_out.linear."):
            out["final_layer.adaLN_modulation.1." + key.rsplit(".", 1)[1]] = _swap_halves(value)
            continue
        m = re.match(r"transformer_blocks\.(\d+)\.(.+)$", key)
        if not m:
            new = next(old + key[len(d):] for d, old in _SD3_TOP.items() if key.startswith(d))
            out[new] = value
            continue
        block, inner = int(m[1]), m[2]
        fused = re.match(r"(attn\.to_|attn\.add_|attn2\.to_)([qkv])(?:_proj)?\.(weight|bias)$", inner)
        if fused:
            qkv.setdefault((block, _SD3_QKV[fused[1]], fused[3]), {})[fused[2]] = value
            continue
        new = next(old + inner[len(d):] for d, old in _SD3_BLOCK.items() if inner.startswith(d))
        if block == last and inner.startswith("norm1_context.linear."):
            value = _swap_halves(value)  # the last block's context stream is a pre-only AdaLN (continuous)
        out[f"joint_blocks.{block}.{new}"] = value
    for (block, name, kind), parts in qkv.items():
        out[f"joint_blocks.{block}.{name}.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {prefix + k: v for k, v in out.items()}


# ---------------------------------------------------------------------------------------------- Flux.2

_FLUX2_TOP = {
    "x_embedder.": "img_in.", "context_embedder.": "txt_in.",
    "time_guidance_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
    "time_guidance_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
    "time_guidance_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
    "time_guidance_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
    "double_stream_modulation_img.linear.": "double_stream_modulation_img.lin.",
    "double_stream_modulation_txt.linear.": "double_stream_modulation_txt.lin.",
    "single_stream_modulation.linear.": "single_stream_modulation.lin.",
    "proj_out.": "final_layer.linear.",
}
_FLUX2_DOUBLE = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale", "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_out.0.": "img_attn.proj.", "attn.to_add_out.": "txt_attn.proj.",
    "ff.linear_in.": "img_mlp.0.", "ff.linear_out.": "img_mlp.2.",
    "ff_context.linear_in.": "txt_mlp.0.", "ff_context.linear_out.": "txt_mlp.2.",
}
_FLUX2_SINGLE = {"attn.to_qkv_mlp_proj.": "linear1.", "attn.to_out.": "linear2.",
                 "attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}


def flux2_to_original(sd: dict) -> dict:
    """A Flux2Transformer2DModel state dict → BFL's released layout (`double_blocks.N.img_attn.qkv`, `single_blocks.N.
    linear1`, `*.norm.query_norm.scale`, `final_layer.adaLN_modulation.1` with (shift, scale))."""
    out, qkv = {}, {}
    for key, value in sd.items():
        if key.startswith("norm_out.linear."):
            out["final_layer.adaLN_modulation.1." + key.rsplit(".", 1)[1]] = _swap_halves(value)
            continue
        m = re.match(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$", key)
        if not m:
            out[next(old + key[len(d):] for d, old in _FLUX2_TOP.items() if key.startswith(d))] = value
            continue
        kind, block, inner = m[1], m[2], m[3]
        fused = re.match(r"attn\.(to_|add_)([qkv])(?:_proj)?\.(weight|bias)$", inner)
        if kind == "transformer_blocks" and fused:
            stream = "img" if fused[1] == "to_" else "txt"
            qkv.setdefault(f"double_blocks.{block}.{stream}_attn.qkv.{fused[3]}", {})[fused[2]] = value
            continue
        table, prefix = ((_FLUX2_DOUBLE, "double_blocks") if kind == "transformer_blocks"
                         else (_FLUX2_SINGLE, "single_blocks"))
        new = next(old + inner[len(d):] for d, old in table.items() if inner.startswith(d))
        out[f"{prefix}.{block}.{new}"] = value
    for name, parts in qkv.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out
