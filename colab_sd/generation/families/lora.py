"""LoRAs on the transformer families (Flux, Chroma, SD3, Z-Image, Flux.2): what diffusers' converters read, what
they silently drop, and how to tell that a loaded adapter changed nothing.

diffusers 0.42 converts, per family (its `lora_pipeline.py` / `lora_conversion_utils.py`, families reference §6):
Flux and Chroma (one mixin) — kohya `lora_unet_double_blocks_…`, XLabs, BFL control, ai-toolkit/PEFT and
diffusers `transformer.…lora_A`; Flux.2 — kohya, `diffusion_model.` (ai-toolkit) and diffusers; Z-Image —
`diffusion_model.`, kohya/musubi `lora_unet_…` with `.alpha`, `default.`; SD3 — diffusers/PEFT only.
Two gaps are handled here:

- SD3 LoRAs in kohya sd-scripts layout (`lora_unet_joint_blocks_…`) load without error and apply nothing
  (kohya-ss/sd-scripts#1743): refused before loading (`refusal`).
- Flux LoRAs saved with BFL module names under `diffusion_model.` with `lora_A` / `lora_B` (ComfyUI-style saves)
  match no diffusers module: renamed to kohya names, which diffusers' Flux kohya converter then reads
  (`prepared`); nothing is converted by hand. On Chroma a Flux LoRA's CLIP part is left out (Chroma has none).

`touched` counts the layers an adapter really changes (non-zero up weights), so "loaded, but matched nothing"
is an error instead of an image identical to the base model's. Light to import: torch only inside functions.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

# A LoRA made for the key family also works on these model families (same module names and widths).
# Chroma is Flux.1 schnell with the modulation layers pruned: Flux LoRAs apply to every layer Chroma kept, and
# Chroma LoRAs use Flux's key names (the probe calls them Flux unless a Chroma-only layer is targeted).
COMPATIBLE = {"flux": ("flux", "chroma")}

_KOHYA = ("lora_unet_", "lora_te")
_BFL_MODULE = re.compile(r"^diffusion_model\.((?:double_blocks|single_blocks)\.\d+\..+|img_in|txt_in|time_in\..+|"
                         r"vector_in\..+|guidance_in\..+|final_layer\..+)\.(lora_A\.weight|lora_B\.weight|alpha)$")
_SUFFIX = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight", "alpha": "alpha"}


def compatible(lora_family: Optional[str], model_family: str) -> bool:
    """Whether a LoRA probed as `lora_family` may be applied to a `model_family` model (unknown: yes)."""
    if not lora_family or lora_family == model_family:
        return True
    return model_family in COMPATIBLE.get(lora_family, ())


def lora_family(family: Optional[str], path: Path, sidecar: dict) -> Optional[str]:
    """The LoRA's family: the probe's, except when the probe only assumed Flux.1 (a LoRA on attention layers
    Flux.1 and Flux.2 Klein 4B share, at the same 3072 width) and CivitAI's `baseModel` in the sidecar names
    another registered family ("Flux.2 Klein 4B" → Flux.2): then the sidecar decides."""
    base = str((sidecar or {}).get("base_model") or (sidecar or {}).get("baseModel") or "").strip().lower()
    if family != "flux" or not base or not Path(path).is_file():
        return family
    from ... import probe
    from . import REGISTRY

    if not any("(assumed)" in reason for reason in probe.inspect(path).reasons):
        return family
    for fam in REGISTRY.values():
        names = list(fam.civitai) + [n for v in fam.variants for n in fam.for_variant(v).civitai]
        if base in (n.lower() for n in names):
            return fam.id
    return family


def lora_keys(path: Path) -> list[str]:
    """The tensor names of a .safetensors LoRA, read from its header (no tensor data); [] for other formats."""
    if Path(path).suffix != ".safetensors":
        return []
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return list(fh.keys())


def refusal(name: str, keys: list[str], model_family: str, model_label: str) -> Optional[str]:
    """Why a LoRA cannot work on this model although its family matches, or None; decided from key names only.

    SD3: diffusers' SD3 loader reads only `transformer.` / `text_encoder*.` keys, so kohya sd-scripts' layout
    (`lora_unet_joint_blocks_…`, `lora_te1_…`) loads as an empty adapter (kohya-ss/sd-scripts#1743).
    """
    if model_family == "sd3" and keys and all(k.startswith(_KOHYA) for k in keys):
        return (f"LoRA {name} is in kohya sd-scripts layout (lora_unet_joint_blocks_…), which diffusers loads "
                f"into {model_label} without applying any layer (kohya-ss/sd-scripts#1743): use a diffusers / "
                f"PEFT version of it (transformer.…lora_A keys)")
    return None


def prepared(path: Path, keys: list[str], model_family: str) -> tuple[Union[str, dict], Optional[str]]:
    """(what to hand to `load_lora_weights`, a note for the user or None): the file itself, or its tensors
    when they need changing first —

    - Flux / Chroma LoRAs with BFL module names under `diffusion_model.` and peft's lora_A / lora_B: renamed to
      kohya names, which diffusers' Flux kohya converter splits into diffusers modules (fused qkv, alpha
      scaling) as it does for sd-scripts files;
    - on Chroma, a Flux LoRA's CLIP part (kohya `lora_te…`, diffusers `text_encoder.`) is dropped: Chroma has no
      CLIP encoder, and diffusers fails on the whole file when it cannot place that part (IndexError in
      get_peft_kwargs).
    """
    rename = model_family in ("flux", "chroma") and bool(keys) and all(_BFL_MODULE.match(k) for k in keys)
    clip = [k for k in keys if k.startswith(("lora_te", "text_encoder.", "text_encoder_2."))]
    drop = model_family == "chroma" and bool(clip) and len(clip) < len(keys)
    if not (rename or drop):
        return str(path), None
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if drop:
        tensors = {k: v for k, v in tensors.items() if k not in set(clip)}
    if rename:
        tensors = {f"lora_unet_{m[1].replace('.', '_')}.{_SUFFIX[m[2]]}": v
                   for k, v in tensors.items() for m in [_BFL_MODULE.match(k)]}
    note = (f"its text-encoder part ({len(clip)} CLIP tensors) is left out: Chroma has no CLIP encoder"
            if drop else None)
    return tensors, note


def touched(pipe, adapter: str) -> int:
    """How many layers of the pipeline's models the adapter changes: LoRA layers holding `adapter` whose up
    weights (lora_B) are not all zero. 0 means the LoRA matched nothing or carries no change."""
    import torch

    count = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            ups = getattr(module, "lora_B", None)
            if isinstance(ups, torch.nn.ModuleDict) and adapter in ups:
                if any(p.detach().abs().sum().item() > 0 for p in ups[adapter].parameters()):
                    count += 1
            embeds = getattr(module, "lora_embedding_B", None)
            if isinstance(embeds, torch.nn.ParameterDict) and adapter in embeds and embeds[adapter].any():
                count += 1
    return count
