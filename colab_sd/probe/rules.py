"""The pure classifier: key names + shapes (+ metadata) → kind, family, variant, with reasons.

Rules follow the real layouts: diffusers' `single_file_utils` (CHECKPOINT_KEY_NAMES, `infer_diffusers_model_type`),
kohya sd-scripts (`lora_unet_*`, `lora_te1_*`/`lora_te2_*`, `ss_*` metadata), LyCORIS (hada / lokr / oft / dora),
peft (`lora_A`/`lora_B`), modelspec metadata, ComfyUI's `v_pred` / `ztsnr` marker keys. Each rule returns a
`Verdict` or None; the first that answers wins, so the order in `inspect_keys` matters.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

from ..library import KINDS
from .dit import dit_verdict, quant_notes, sd3_variant, text_encoder_verdict
from .result import FAMILY_NAMES, Probe


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
# A UNet attention with a second transformer block (SDXL has 2 or 10 per attention, SD1/SD2 one):
# input_blocks_4_1_transformer_blocks_1 / down_blocks.2.attentions.1.transformer_blocks.9 / mid_block.attentions.0.…
_TBLOCK_N = re.compile(r"(?:blocks?[._]\d+[._](?:\d+[._])?|attentions[._]\d+[._])transformer_blocks[._][1-9]")
_RESBLOCK = re.compile(r"^model\.diffusion_model\.|^(input_blocks|middle_block|output_blocks)\.")


def _shape(shapes: dict, key: str):
    value = shapes.get(key)
    return list(value) if isinstance(value, (list, tuple)) else None


def _dim(shapes: dict, key: Optional[str], index: int) -> Optional[int]:
    shape = _shape(shapes, key) if key else None
    if not shape:
        return None
    try:
        return shape[index]
    except IndexError:
        return None


def _has_prefix(keys: Iterable[str], *prefixes: str) -> Optional[str]:
    for k in keys:
        if k.startswith(prefixes):
            return k
    return None


def _has_part(keys: Iterable[str], *parts: str) -> Optional[str]:
    for k in keys:
        if any(p in k for p in parts):
            return k
    return None


def _family_from_words(text: str) -> Optional[str]:
    """The family an architecture string names ("stable-diffusion-xl-v1-base/lora", "sd_v1", "flux1", …)."""
    for pattern, family in ((r"flux", "flux"), (r"cascade", "sd-cascade"), (r"xl.*refiner|refiner.*xl", "sdxl-refiner"),
                            (r"xl|pony|illustrious|noob", "sdxl"), (r"sd3|-3\b|-3[.-]|v3", "sd3"),
                            (r"v2|sd2", "sd2"), (r"v1|sd1", "sd1"), (r"pixart", "pixart"), (r"aura", "auraflow"),
                            (r"hunyuan", "hunyuan")):
        if re.search(pattern, text):
            return family
    return None


def _family_from_base_name(name: str) -> Optional[str]:
    """The family a base model's file name suggests ("sd_xl_base_1.0", "v1-5-pruned-emaonly", …), or None."""
    for pattern, family in ((r"xl|pony|illustrious|noob", "sdxl"), (r"flux", "flux"),
                            (r"v1[-_.]?5|sd[-_]?1[-_.]?5", "sd1"), (r"v2[-_.]?1|sd[-_]?2[-_.]?1|768-v", "sd2")):
        if re.search(pattern, name):
            return family
    return None


def family_from_metadata(metadata: dict) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(family, variant, source) hinted by modelspec / kohya metadata; the keys outrank all of it."""
    family = variant = source = None
    for field in ("modelspec.architecture", "ss_base_model_version"):
        text = str(metadata.get(field) or "").lower()
        family = _family_from_words(text) if text else None
        if family:
            source = f"{field} = {metadata[field]!r}"
            if "768-v" in text or text.endswith(("-v", "_v")) or "_v_" in text:
                variant = "v-prediction"
            break
    if family is None and str(metadata.get("ss_v2", "")).lower() == "true":
        family, source = "sd2", "ss_v2 = 'True'"
    if family is None and metadata.get("ss_sd_model_name"):
        # only the file name the trainer started from: the weakest hint, tried last
        family = _family_from_base_name(str(metadata["ss_sd_model_name"]).lower())
        source = f"ss_sd_model_name = {metadata['ss_sd_model_name']!r}" if family else None
    prediction = str(metadata.get("modelspec.prediction_type") or "").lower()
    if prediction in ("v", "v_prediction", "v-prediction") or \
            str(metadata.get("ss_v_parameterization", "")).lower() == "true":
        variant = "v-prediction"
    return family, variant, source


def width_family(width: Optional[int]) -> Optional[str]:
    return {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}.get(width)


def _cross_attn(shapes: dict, keys: Iterable[str]) -> tuple[Optional[int], Optional[str]]:
    """Context width of a UNet's cross-attention (to_k in-features), and the key it came from."""
    for k in keys:
        if k.endswith("attn2.to_k.weight"):
            width = _dim(shapes, k, 1)
            if width:
                return width, k
    return None, None


def _fmt_shape(shapes: dict, key: str) -> str:
    shape = _shape(shapes, key)
    return f" {shape}" if shape is not None else ""


class Verdict:
    """Collects reasons while a rule decides; becomes a Probe."""

    def __init__(self, kind=None, family=None, variant=None):
        self.kind, self.family, self.variant, self.reasons = kind, family, variant, []

    def why(self, text: str) -> "Verdict":
        self.reasons.append(text)
        return self

    def probe(self, format: str, metadata: Optional[dict] = None) -> Probe:
        assert self.kind in KINDS or self.kind is None
        return Probe(self.kind, self.family, self.variant, format, tuple(self.reasons), dict(metadata or {}))


def inspect_keys(keys_to_shapes: dict, metadata: Optional[dict] = None, *, format: str = "safetensors") -> Probe:
    """Classify a state dict from its key names and shapes (shape None = unknown) plus optional metadata."""
    metadata = dict(metadata or {})
    shapes = {str(k): v for k, v in keys_to_shapes.items()}
    for prefix in ("base_model.model.",):  # peft's raw save wraps every key
        if shapes and all(k.startswith(prefix) for k in shapes):
            shapes = {k[len(prefix):]: v for k, v in shapes.items()}
    keys = sorted(shapes)
    verdict = None
    if keys:
        for rule in (_embedding, _lora, _controlnet, _diffusion_model, _vae, _upscaler, _other_known):
            verdict = rule(shapes, keys, metadata)
            if verdict is not None:
                break
    meta_family, meta_variant, source = family_from_metadata(metadata)
    if verdict is None:
        verdict = Verdict()
        if not keys:
            verdict.why("no tensors in the file")
        else:
            verdict.why(f"no known key pattern; first keys: {', '.join(keys[:3])}")
        if meta_family:
            verdict.why(f"metadata says {FAMILY_NAMES.get(meta_family, meta_family)} ({source}), kind still unknown")
    elif meta_family and verdict.kind != "upscaler":
        if verdict.family is None:
            verdict.family = meta_family
            verdict.why(f"family from metadata: {source}")
        elif meta_family != verdict.family and verdict.kind in ("lora", "checkpoint"):
            verdict.why(f"metadata says {meta_family} ({source}) but the keys say {verdict.family}; trusting the keys")
    if meta_variant == "v-prediction" and verdict.kind == "checkpoint" and verdict.variant is None:
        verdict.variant = "v-prediction"
        verdict.why("metadata marks it v-prediction")
    elif meta_variant == "v-prediction" and verdict.kind == "lora":  # the variant slot names the LyCORIS algorithm
        verdict.why("metadata says it was trained on a v-prediction model")
    if format == "pickle":
        verdict.why("pickle format: loading it runs code from the file; prefer a .safetensors version")
    return verdict.probe(format, metadata)


# ------------------------------------------------------------------------------------------------ rules


def _embedding(shapes, keys, metadata):
    if "clip_g" in shapes and len(keys) <= 4:
        return Verdict("embedding", "sdxl").why(
            f"has clip_g{_fmt_shape(shapes, 'clip_g')} (+ clip_l): an SDXL textual-inversion embedding")
    key = "emb_params" if "emb_params" in shapes else _has_prefix(keys, "string_to_param.")
    if key:
        width = _dim(shapes, key, -1)
        family = {768: "sd1", 1024: "sd2"}.get(width)
        verdict = Verdict("embedding", family).why(
            f"has {key}{_fmt_shape(shapes, key)}: a textual-inversion embedding")
        if family:
            verdict.why(f"vectors are {width} wide → {FAMILY_NAMES[family]} text encoder")
        else:
            verdict.why("vector width unknown: family undecided")
        return verdict
    # diffusers `learned_embeds`: {"<token>": [768]} and nothing else
    if len(keys) <= 8 and all("." not in k and k not in ("weight", "bias") for k in keys):
        widths = {_dim(shapes, k, -1) for k in keys}
        ranks = {len(_shape(shapes, k) or []) for k in keys}
        if len(widths) == 1 and widths <= {768, 1024} and ranks <= {1, 2}:
            width = widths.pop()
            family = "sd1" if width == 768 else "sd2"
            return Verdict("embedding", family).why(
                f"only token vectors ({', '.join(keys[:3])}) {width} wide: a diffusers textual-inversion embedding "
                f"→ {FAMILY_NAMES[family]}")
    return None


def _lora(shapes, keys, metadata):
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
        conv = any(len(_shape(shapes, k) or []) == 4 and (_shape(shapes, k) or [0, 0, 1])[2] > 1
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
    _lora_family(shapes, keys, verdict)
    return verdict


def _lora_family(shapes, keys, verdict):
    flux = _has_part(keys, "double_blocks", "single_blocks", "single_transformer_blocks")
    if flux:
        verdict.family = "flux"
        verdict.why(f"targets {flux[:90]} (Flux double/single blocks) → Flux")
        return
    joint = _has_part(keys, "joint_blocks", "context_block")
    if joint:
        verdict.family = "sd3"
        verdict.why(f"targets {joint[:90]} (SD3 joint blocks) → SD3")
        return
    dit = _has_prefix(keys, "transformer.", "lora_transformer_", "diffusion_model.")
    if dit:
        widths = {_dim(shapes, k, -1) for k in keys if _DOWN.search(k) and ("to_k" in k or "attn" in k)}
        if 3072 in widths:
            verdict.family = "flux"
            verdict.why("transformer attention takes 3072 features (Flux width) → Flux")
            return
        if widths & {1536, 2432}:
            verdict.family = "sd3"
            verdict.why("transformer attention takes 1536/2432 features (SD3 widths) → SD3")
            return
    te2 = next((k for k in keys if _TE2.search(k)), None)
    if te2:
        verdict.family = "sdxl"
        verdict.why(f"has a second text encoder ({te2[:60]}…) → SDXL")
        return
    deep = next((k for k in keys if _TBLOCK_N.search(k)), None)
    attn_width, attn_key = None, None
    for k in keys:
        if _ATTN2_K.search(k) and _DOWN.search(k):
            attn_width, attn_key = _dim(shapes, k, 1), k
        elif _ATTN2_K.search(k) and k.endswith(".lokr_w1"):
            # LoKr: the weight is kron(w1, w2), so its in-features are w1's columns × w2's columns
            w2 = _dim(shapes, k[: -len("w1")] + "w2", 1)
            w1 = _dim(shapes, k, 1)
            attn_width, attn_key = (w1 * w2 if w1 and w2 else None), k
        if attn_width:
            break
    family = width_family(attn_width) if attn_width else None
    if family:
        verdict.family = family
        verdict.why(f"cross-attention to_k takes {attn_width}-wide context ({attn_key[:90]}) "
                    f"→ {FAMILY_NAMES[family]}")
        return
    if deep:
        verdict.family = "sdxl"
        verdict.why(f"targets {deep[:90]} (more than one transformer block per level, SDXL only) → SDXL")
        return
    for k in keys:
        if _TE_K.search(k) and _DOWN.search(k):
            width = _dim(shapes, k, 1)
            if width in (768, 1024):
                verdict.family = "sd1" if width == 768 else "sd2"
                verdict.why(f"text-encoder attention takes {width} features ({k[:80]}) "
                            f"→ {FAMILY_NAMES[verdict.family]}")
                return
    layers = [int(m.group(1)) for k in keys for m in [_TE_LAYER.search(k)] if m]
    if layers and max(layers) >= 12:
        verdict.family = "sd2"
        verdict.why(f"text-encoder layer {max(layers)} exists (CLIP-L has 12, OpenCLIP-H 24) → SD2")
        return
    if not verdict.family:
        verdict.why("key names and shapes do not tell the base model")


def _controlnet(shapes, keys, metadata):
    marker = (_has_prefix(keys, "control_model.") or _has_prefix(keys, "controlnet_cond_embedding.")
              or _has_prefix(keys, "input_hint_block.") or _has_prefix(keys, "controlnet_blocks.")
              or _has_prefix(keys, "controlnet_x_embedder.") or _has_prefix(keys, "lllite_")
              or ("lora_controlnet" in shapes and "lora_controlnet"))
    if not marker:
        return None
    verdict = Verdict("controlnet").why(f"has {marker.split('.')[0]}… → ControlNet")
    if _has_part(keys, "double_blocks", "single_transformer_blocks", "single_blocks", "controlnet_x_embedder."):
        verdict.family = "flux"
        return verdict.why("built on Flux blocks → Flux")
    if _has_part(keys, "joint_blocks", "pos_embed_input"):
        verdict.family = "sd3"
        return verdict.why("built on SD3 joint blocks → SD3")
    if marker.startswith("lllite_") or marker == "lora_controlnet":
        verdict.family = "sdxl"
        return verdict.why(f"{marker.rstrip('_')} is an SDXL-only ControlNet format → SDXL")
    width, key = _cross_attn(shapes, keys)
    if width and width_family(width):
        verdict.family = width_family(width)
        return verdict.why(f"cross-attention to_k takes {width}-wide context → {FAMILY_NAMES[verdict.family]}")
    add = _has_part(keys, "add_embedding.linear_1.weight", "label_emb.0.0.weight")
    if add:
        verdict.family = "sdxl"
        return verdict.why(f"has {add} (size/crop conditioning) → SDXL")
    return verdict.why("cross-attention width unknown: family undecided")


def _diffusion_model(shapes, keys, metadata):
    """Whole checkpoints and their diffusion model (UNet or transformer) alone."""
    strip = "model.diffusion_model."
    inner = {k[len(strip):] if k.startswith(strip) else k: k for k in keys}
    wrapped = any(k.startswith(strip) for k in keys)
    where = "model.diffusion_model." if wrapped else ""

    def has(key):
        return key in inner

    def full(key):
        return inner.get(key)

    verdict = dit_verdict(inner, shapes, Verdict, where)
    if verdict is not None:
        pass
    elif has("double_blocks.0.img_attn.norm.key_norm.scale") or (
            _has_prefix(inner, "double_blocks.") and _has_prefix(inner, "single_blocks.")):
        if _has_prefix(inner, "distilled_guidance_layer."):
            verdict = Verdict("checkpoint", "chroma").why(
                f"has {where}double_blocks + distilled_guidance_layer → Chroma")
        else:
            verdict = Verdict("checkpoint", "flux").why(f"has {where}double_blocks / single_blocks → Flux")
            img_in = _dim(shapes, full("img_in.weight") or "", 1) if full("img_in.weight") else None
            if img_in == 384:
                verdict.variant = "inpaint"
                verdict.why("img_in takes 384 features (Flux Fill) → inpaint")
            elif img_in == 128:
                verdict.variant = "depth"
                verdict.why("img_in takes 128 features → Flux Depth")
            elif not has("guidance_in.in_layer.weight") and not has("guidance_in.in_layer.bias"):
                verdict.variant = "schnell"
                verdict.why("no guidance_in (no distilled guidance) → Flux schnell")
    elif _has_prefix(inner, "joint_blocks."):
        verdict = sd3_variant(Verdict("checkpoint", "sd3").why(f"has {where}joint_blocks (MMDiT) → SD3"), inner,
                              "joint_blocks", "x_block.attn2.")
    elif has("double_layers.0.attn.w2q.weight") or has("cond_seq_linear.weight"):
        verdict = Verdict("checkpoint", "auraflow").why("has double_layers / cond_seq_linear → AuraFlow")
    elif has("clip_txt_mapper.weight") or has("down_blocks.1.0.channelwise.0.weight"):
        stage = "stage-c" if has("clip_txt_mapper.weight") else "stage-b"
        verdict = Verdict("checkpoint", "sd-cascade", stage).why(
            f"has {'clip_txt_mapper' if stage == 'stage-c' else 'channelwise blocks'} → Stable Cascade {stage}")
    elif has("txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias"):
        verdict = Verdict("checkpoint", "hunyuan-video").why("has txt_in.individual_token_refiner → HunyuanVideo")
    elif has("mlp_t5.0.weight") or has("text_embedding_padding"):
        verdict = Verdict("checkpoint", "hunyuan").why("has mlp_t5 / text_embedding_padding → Hunyuan-DiT")
    elif has("blocks.0.cross_attn.q_linear.weight"):
        if _has_prefix(inner, "blocks.0.mlp.inverted_conv."):
            verdict = Verdict("checkpoint", "sana").why("has cross_attn.q_linear + GLUMBConv mlp → Sana")
        else:
            verdict = Verdict("checkpoint", "pixart").why("has blocks.*.cross_attn.q_linear (+ y_embedder) → PixArt")
    elif _has_prefix(inner, "input_blocks.") and (wrapped or _has_prefix(inner, "output_blocks.", "middle_block.")):
        verdict = _unet_checkpoint(shapes, keys, inner, wrapped)
    if verdict is None:
        return None
    if verdict.family not in ("sd1", "sd2", "sdxl", "sdxl-refiner"):
        if not _has_prefix(keys, "text_encoders.", "cond_stage_model.", "conditioner.", "vae.", "first_stage_model."):
            verdict.why("diffusion model only: text encoders and VAE come separately")
    if "edm_vpred.sigma_max" in shapes:
        verdict.variant = "edm-v-prediction"
        verdict.why("has edm_vpred.sigma_max → EDM v-prediction (CosXL style)")
    elif "v_pred" in shapes:
        verdict.variant = "v-prediction"
        verdict.why("has a v_pred key → v-prediction")
    if "ztsnr" in shapes:
        verdict.why("has a ztsnr key → trained with zero terminal SNR")
    for note in quant_notes(keys):
        verdict.why(note)
    return verdict


def _unet_checkpoint(shapes, keys, inner, wrapped):
    verdict = Verdict("checkpoint")
    if wrapped:
        verdict.why("has model.diffusion_model.* (UNet in the original Stable Diffusion layout) → checkpoint")
    else:
        verdict.why("has input_blocks / middle_block / output_blocks (original-layout UNet) → checkpoint")
    width, wkey = _cross_attn(shapes, [k for k in keys if _RESBLOCK.search(k)])
    te_family, te_reason = None, None
    if _has_prefix(keys, "conditioner.embedders.1."):
        te_family, te_reason = "sdxl", "has conditioner.embedders.1 (second text encoder, OpenCLIP bigG) → SDXL"
    elif _has_prefix(keys, "conditioner.embedders.0.model."):
        te_family, te_reason = ("sdxl-refiner",
                                "has only conditioner.embedders.0.model (OpenCLIP bigG, no CLIP-L) → SDXL refiner")
    elif _has_prefix(keys, "cond_stage_model.model."):
        te_family, te_reason = "sd2", "has cond_stage_model.model.* (OpenCLIP-H text encoder) → SD2"
    elif _has_prefix(keys, "cond_stage_model.transformer."):
        te_family, te_reason = "sd1", "has cond_stage_model.transformer.* (CLIP-L text encoder) → SD1"
    label = next((k for k in keys if k.endswith("label_emb.0.0.weight")), None)
    label_family = {2816: "sdxl", 2560: "sdxl-refiner"}.get(_dim(shapes, label, 1) if label else None)
    by_width = width_family(width)
    if by_width:
        verdict.family = by_width
        verdict.why(f"cross-attention to_k takes {width}-wide context ({wkey}{_fmt_shape(shapes, wkey)}) "
                    f"→ {FAMILY_NAMES[by_width]}")
        if te_family and te_family != by_width:
            verdict.why(f"note: text-encoder keys suggest {te_family}; trusting the UNet")
        elif te_reason:
            verdict.why(te_reason)
    elif te_family:
        verdict.family = te_family
        verdict.why(te_reason)
    elif label_family:
        verdict.family = label_family
        verdict.why(f"label_emb takes {_dim(shapes, label, 1)} features → {FAMILY_NAMES[label_family]}")
    else:
        verdict.why("cross-attention width unknown: family undecided")
    if not _has_prefix(keys, "cond_stage_model.", "conditioner.", "first_stage_model."):
        verdict.why("UNet only: text encoder and VAE are not inside")
    conv_in = next((k for k in keys if k.endswith("input_blocks.0.0.weight") and _RESBLOCK.search(k)), None)
    channels = _dim(shapes, conv_in, 1) if conv_in else None
    if channels == 9:
        verdict.variant = "inpaint"
        verdict.why(f"{conv_in} takes 9 input channels → inpainting model")
    elif channels == 8:
        verdict.variant = "instruct-pix2pix"
        verdict.why(f"{conv_in} takes 8 input channels → InstructPix2Pix")
    if "edm_mean" in shapes and verdict.family == "sdxl":
        verdict.variant = "playground-v2.5"
        verdict.why("has edm_mean / edm_std (EDM) → Playground v2.5")
    return verdict


_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_VAE_EXTRA = ("model_ema.", "loss.")


def _vae(shapes, keys, metadata):
    for prefix in ("", "first_stage_model.", "vae."):
        body = [k[len(prefix):] for k in keys if k.startswith(prefix)]
        if len(body) != len(keys) and prefix:
            continue
        core = [k for k in body if k.startswith(_VAE_PARTS)]
        if not core or any(not k.startswith(_VAE_PARTS + _VAE_EXTRA) for k in body):
            continue
        has_enc = any(k.startswith("encoder.") for k in core)
        has_dec = any(k.startswith("decoder.") for k in core)
        conv = any(k.endswith(("conv_in.weight", "conv_out.weight")) or ".layers." in k for k in core)
        if not (has_enc and has_dec and conv) and not (has_dec and "decoder.conv_in.weight" in body):
            continue
        diffusers = any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in core)
        quant = " / quant_conv" if any(k.startswith("quant_conv") for k in core) else ""
        verdict = Verdict("vae").why(f"only {prefix}encoder / decoder{quant} weights "
                                     f"({'diffusers' if diffusers else 'original'} layout) → VAE")
        latent = _dim(shapes, prefix + "decoder.conv_in.weight", 1)
        if latent == 16:
            verdict.why("16 latent channels: an SD3 / Flux style VAE; which one is undecidable from shapes")
        elif latent == 4:
            verdict.why("4 latent channels: SD1, SD2 and SDXL VAEs have the same shapes; family undecidable")
        else:
            verdict.why("family undecidable from shapes")
        return verdict
    return None


def _upscaler(shapes, keys, metadata):
    def up(why):
        return Verdict("upscaler").why(why + " → upscaler")

    if "model.0.weight" in shapes and _has_prefix(keys, "model.1.sub."):
        return up("has model.0 + model.1.sub.* (old-architecture ESRGAN)")
    if "conv_first.weight" in shapes:
        if _has_prefix(keys, "RRDB_trunk."):
            return up("has conv_first + RRDB_trunk.* (ESRGAN)")
        if any(k.startswith("body.") and ".rdb" in k for k in keys):
            return up("has conv_first + body.*.rdb* (Real-ESRGAN RRDBNet)")
        if any(k.startswith("layers.") and ".residual_group." in k for k in keys):
            return up("has conv_first + layers.*.residual_group (SwinIR / HAT)")
        if "conv_last.weight" in shapes or _has_prefix(keys, "upsample."):
            return up("has conv_first … conv_last / upsample (a super-resolution network)")
    if keys and all(re.fullmatch(r"body\.\d+\.(weight|bias)", k) for k in keys) and len(keys) >= 6:
        first = _shape(shapes, "body.0.weight")
        if first is None or (len(first) == 4 and first[1] in (1, 3)):
            return up("only body.N convolutions starting from an image (Real-ESRGAN compact / SRVGGNet)")
    return None


def _other_known(shapes, keys, metadata):
    """Things we recognise that have no folder of their own: reported as kind "other" with why."""
    encoder = text_encoder_verdict(shapes, Verdict)
    if encoder is not None:
        return encoder
    if _has_prefix(keys, "vision_model.encoder.layers."):
        return Verdict("other").why("a CLIP vision encoder alone (vision_model.*, used by IP-Adapter) → other")
    if _has_part(keys, "motion_modules."):
        return Verdict("other").why("has motion_modules.* (AnimateDiff motion module) → other")
    if _has_prefix(keys, "image_proj.") and _has_prefix(keys, "ip_adapter."):
        return Verdict("other").why("has image_proj + ip_adapter (IP-Adapter) → other")
    if _has_prefix(keys, "down_blocks.") and _has_prefix(keys, "up_blocks.") and "conv_in.weight" in shapes:
        width, _key = _cross_attn(shapes, keys)
        family = width_family(width)
        verdict = Verdict("other", family).why("a diffusers-layout UNet alone (down_blocks / up_blocks), not a "
                                                "whole checkpoint → other")
        if family:
            verdict.why(f"cross-attention to_k takes {width}-wide context → {FAMILY_NAMES[family]}")
        return verdict
    if _has_prefix(keys, "transformer_blocks.") and _has_prefix(keys, "single_transformer_blocks."):
        return Verdict("other", "flux").why("a diffusers-layout Flux transformer alone → other")
    return None
