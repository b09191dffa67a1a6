"""LoRA and LyCORIS files: which algorithm (kohya LoRA / LoCon, LoHa, LoKr, OFT, DoRA, IA3, full, GLoRA; peft,
diffusers, XLabs layouts) and which base family, from key names and shapes."""
from __future__ import annotations

import re

from .keys import Verdict, dim, family_from_metadata, has_part, has_prefix, shape_of, width_family
from .result import FAMILY_NAMES

_LORA_STRONG = re.compile(
    r"(\.lora_(up|down|mid|A|B)\.weight|\.lora\.(up|down)\.weight|_lora\d*\.(up|down)\.weight|"
    r"\.lora_magnitude_vector(\.weight)?|\.dora_scale|\.hada_(w1|w2)_(a|b)|\.hada_t[12]|"
    r"\.lokr_(w1|w2)(_a|_b)?|\.lokr_t2|\.oft_blocks|\.oft_diag|\.oft_R(\.weight)?)$")
_KOHYA_PREFIX = re.compile(r"^(lora_(unet|te\d?|transformer)_|lycoris_|lora_te_text_model)")
_TE2 = re.compile(r"^(lora_te2_|text_encoder_2\.|te2\.|lora_te2\.|base_model\.model\.text_encoder_2\.)")
_ATTN2_K = re.compile(r"attn2[._](processor[._])?to_k")
_DOWN = re.compile(r"(lora_down|lora\.down|lora_A|_lora\.down|hada_w[12]_b)(\.weight)?$")
_TE_K = re.compile(r"self_attn[._](k|q|v)_proj")
_TE_LAYER = re.compile(r"encoder[._]layers[._](\d+)[._]")
# Z-Image (and Lumina 2, its ancestor) blocks, in diffusers, original and kohya spellings:
# layers.0.attention.to_q / diffusion_model.layers.0.attention.qkv / lora_unet_noise_refiner_0_feed_forward_w1
_ZIMAGE = re.compile(r"(?:^|[._])(?:layers|noise_refiner|context_refiner)[._]\d+[._]"
                     r"(?:attention|feed_forward|adaLN_modulation)")
# Module names only Flux.2 has (diffusers and BFL spellings): fused single-block projection, shared modulation
_FLUX2_ONLY = ("to_qkv_mlp_proj", "double_stream_modulation", "single_stream_modulation", "ff.linear_in",
               "ff_linear_in", "ff_context.linear_in", "ff_context_linear_in")
# Module names only Flux.1 has: per-block modulation (BFL `img_mod` / `modulation.lin`) and diffusers' `proj_mlp`
_FLUX1_ONLY = re.compile(r"img_mod|txt_mod|single_blocks[._]\d+[._]modulation[._]lin|proj_mlp")
# out-features / in-features of a single block's linear1 and a double block's img_mlp.0: Flux.1 (MLP ratio 4:
# 3h + 4h, 4h) against Flux.2 (SwiGLU, ratio 3: 3h + 2·3h, 2·3h) — the same at any width, tiny ones included
_FLUX_RATIOS = {("linear1", 7): "flux", ("linear1", 9): "flux2", ("img_mlp", 4): "flux", ("img_mlp", 6): "flux2"}
_RATIO_LAYER = re.compile(r"(?:single_blocks[._]\d+[._](linear1)|double_blocks[._]\d+[._](img_mlp)[._]0)"
                          r"[._](?:lora_down|lora_A)\.weight$")
# A UNet attention with a second transformer block (SDXL has 2 or 10 per attention, SD1/SD2 one):
# input_blocks_4_1_transformer_blocks_1 / down_blocks.2.attentions.1.transformer_blocks.9 / mid_block.attentions.0.…
_TBLOCK_N = re.compile(r"(?:blocks?[._]\d+[._](?:\d+[._])?|attentions[._]\d+[._])transformer_blocks[._][1-9]")


def lora_rule(shapes, keys, metadata):
    strong = [k for k in keys if _LORA_STRONG.search(k)]
    kohya = [k for k in keys if _KOHYA_PREFIX.search(k)]
    if not strong and len(kohya) * 2 < len(keys):
        return None
    lora_like = len(set(strong) | set(kohya) | {k for k in keys if k.endswith(".alpha")})
    if lora_like * 2 < len(keys):
        return None
    verdict = Verdict("lora")
    algo = None
    if any(".hada_" in k for k in strong):
        algo, label = "loha", "LyCORIS LoHa (hada_w1_a …)"
    elif any(".lokr_" in k for k in strong):
        algo, label = "lokr", "LyCORIS LoKr (lokr_w1 …)"
    elif any(".oft_" in k for k in strong):
        algo, label = "oft", "OFT (oft_blocks …)"
    elif any(k.endswith((".dora_scale", ".lora_magnitude_vector", ".lora_magnitude_vector.weight")) for k in strong):
        algo, label = "dora", "DoRA (dora_scale / lora_magnitude_vector)"
    elif any(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in strong):
        label = "peft-style LoRA (lora_A / lora_B)"
    elif any(k.endswith((".lora.down.weight", "_lora.down.weight")) for k in strong):
        label = "diffusers-style LoRA (lora.down / lora.up)"
    elif any(re.search(r"_lora\d+\.(down|up)\.weight$", k) for k in strong):
        label = "XLabs-style LoRA (qkv_lora1 / proj_lora1)"
    elif any(k.endswith(".lora_down.weight") for k in strong):
        conv = any(len(shape_of(shapes, k) or []) == 4 and (shape_of(shapes, k) or [0, 0, 1])[2] > 1
                   for k in strong if k.endswith(".lora_down.weight"))
        label = "kohya LoCon (lora_down on 3×3 convs)" if conv else "kohya LoRA (lora_down / lora_up)"
    elif any(k.endswith(".on_input") for k in kohya):
        algo, label = "ia3", "LyCORIS IA3 (on_input)"
    elif any(k.endswith((".diff", ".diff_b")) for k in kohya):
        algo, label = "full", "LyCORIS full (diff)"
    elif any(k.endswith((".a1.weight", ".b1.weight")) for k in kohya):
        algo, label = "glora", "LyCORIS GLoRA (a1 / b1)"
    else:
        label = "kohya-named network weights"
    verdict.variant = algo
    verdict.why(f"{lora_like} of {len(keys)} keys are {label} weights → LoRA")
    _lora_family(shapes, keys, verdict, metadata or {})
    return verdict


def _lora_family(shapes, keys, verdict, metadata: dict) -> None:
    """Set `verdict.family` from what the LoRA targets; the first deciding layer wins, in this order."""
    if _transformer_family(shapes, keys, verdict, metadata):
        return
    for decide in (_unet_family, _text_encoder_family):
        if decide(shapes, keys, verdict):
            return
    if not verdict.family:
        verdict.why("key names and shapes do not tell the base model")


def _decided(verdict, family: str, reason: str) -> bool:
    verdict.family = family
    verdict.why(reason)
    return True


def _transformer_family(shapes, keys, verdict, metadata: dict) -> bool:
    """Z-Image blocks, Flux.2 / Flux.1 / Chroma double and single blocks, SD3 joint blocks, or a DiT LoRA told
    apart by its attention width."""
    zimage = next((k for k in keys if _ZIMAGE.search(k)), None)
    if zimage:
        width = next((dim(shapes, k, -1) for k in keys if _ZIMAGE.search(k) and _DOWN.search(k) and "attention" in k),
                     None)
        if width == 2304:
            return _decided(verdict, "lumina", f"targets {zimage[:90]} 2304 wide (Lumina 2 width) → Lumina")
        return _decided(verdict, "zimage", f"targets {zimage[:90]} (Z-Image layers / refiners) → Z-Image")
    chroma = has_part(keys, "distilled_guidance_layer")
    if chroma:
        return _decided(verdict, "chroma", f"targets {chroma[:90]} (Chroma's guidance approximator) → Chroma")
    flux = has_part(keys, "double_blocks", "single_blocks", "single_transformer_blocks", *_FLUX2_ONLY)
    if flux:
        family, reason = _flux_generation(shapes, keys, metadata)
        return _decided(verdict, family, f"targets {flux[:90]} (Flux double/single blocks); {reason}")
    joint = has_part(keys, "joint_blocks", "context_block")
    if joint:
        return _decided(verdict, "sd3", f"targets {joint[:90]} (SD3 joint blocks) → SD3")
    if has_prefix(keys, "transformer.", "lora_transformer_", "diffusion_model."):
        widths = {dim(shapes, k, -1) for k in keys if _DOWN.search(k) and ("to_k" in k or "attn" in k)}
        if 3072 in widths:
            return _decided(verdict, "flux", "transformer attention takes 3072 features (Flux width) → Flux")
        if widths & {1536, 2432}:
            return _decided(verdict, "sd3", "transformer attention takes 1536/2432 features (SD3 widths) → SD3")
    return False


def _flux_generation(shapes, keys, metadata: dict) -> tuple[str, str]:
    """Flux.1 or Flux.2 (or Chroma by metadata) for a LoRA with Flux-style blocks: module names only one has, the MLP
    ratio of the layers it targets, a width only Flux.2 has, then the metadata; Flux.1 when nothing tells."""
    only2 = has_part(keys, *_FLUX2_ONLY)
    if only2:
        return "flux2", f"{only2[:60]} exists only in Flux.2 → Flux.2"
    for k in keys:
        m = _RATIO_LAYER.search(k)
        rows, cols = dim(shapes, _up_key(k), 0), dim(shapes, k, -1)
        if m and rows and cols and rows % cols == 0:
            family = _FLUX_RATIOS.get((m.group(1) or m.group(2), rows // cols))
            if family:
                return family, f"{k[:60]} maps {cols} → {rows} features (MLP ratio) → {FAMILY_NAMES[family]}"
    widths = {dim(shapes, k, -1) for k in keys if _DOWN.search(k) and "attn" in k}
    if widths & {4096, 6144}:
        return "flux2", "attention takes 4096/6144 features (Flux.2 widths) → Flux.2"
    only1 = next((k for k in keys if _FLUX1_ONLY.search(k)), None)
    if only1:
        return "flux", f"{only1[:60]} exists only in Flux.1 → Flux"
    meta_family, _, source = family_from_metadata(metadata)
    if meta_family in ("flux2", "chroma"):
        return meta_family, f"only layers Flux.1 also has; {source} → {FAMILY_NAMES[meta_family]}"
    return "flux", "only layers Flux.1 and Flux.2 Klein share, no metadata saying which → Flux (assumed)"


def _up_key(down_key: str) -> str:
    return down_key.replace("lora_down.weight", "lora_up.weight").replace("lora_A.weight", "lora_B.weight")


def _unet_family(shapes, keys, verdict) -> bool:
    """A second text encoder, the UNet's cross-attention context width, or SDXL's deeper transformer blocks."""
    te2 = next((k for k in keys if _TE2.search(k)), None)
    if te2:
        return _decided(verdict, "sdxl", f"has a second text encoder ({te2[:60]}…) → SDXL")
    attn_width, attn_key = None, None
    for k in keys:
        if _ATTN2_K.search(k) and _DOWN.search(k):
            attn_width, attn_key = dim(shapes, k, 1), k
        elif _ATTN2_K.search(k) and k.endswith(".lokr_w1"):
            # LoKr: the weight is kron(w1, w2), so its in-features are w1's columns × w2's columns
            w2 = dim(shapes, k[: -len("w1")] + "w2", 1)
            w1 = dim(shapes, k, 1)
            attn_width, attn_key = (w1 * w2 if w1 and w2 else None), k
        if attn_width:
            break
    family = width_family(attn_width) if attn_width else None
    if family:
        return _decided(verdict, family, f"cross-attention to_k takes {attn_width}-wide context ({attn_key[:90]}) "
                                         f"→ {FAMILY_NAMES[family]}")
    deep = next((k for k in keys if _TBLOCK_N.search(k)), None)
    if deep:
        return _decided(verdict, "sdxl", f"targets {deep[:90]} (more than one transformer block per level, SDXL "
                                         f"only) → SDXL")
    return False


def _text_encoder_family(shapes, keys, verdict) -> bool:
    """CLIP-L (768, SD1) or OpenCLIP-H (1024, SD2) attention widths, or a text-encoder layer past CLIP-L's 12."""
    for k in keys:
        if _TE_K.search(k) and _DOWN.search(k):
            width = dim(shapes, k, 1)
            if width in (768, 1024):
                family = "sd1" if width == 768 else "sd2"
                return _decided(verdict, family, f"text-encoder attention takes {width} features ({k[:80]}) "
                                                 f"→ {FAMILY_NAMES[family]}")
    layers = [int(m.group(1)) for k in keys for m in [_TE_LAYER.search(k)] if m]
    if layers and max(layers) >= 12:
        return _decided(verdict, "sd2", f"text-encoder layer {max(layers)} exists (CLIP-L has 12, OpenCLIP-H 24) "
                                        f"→ SD2")
    return False
