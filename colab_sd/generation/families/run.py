"""What the engine asks a family while generating: defaults, the memory plan, the call's arguments, infotext.

The engine calls these for every model; the answers come from the `Family` entry, so no family name is tested
outside the registry. SD families keep the engine's own (A1111) path: `call_kwargs` is only used for
transformer families, whose pipelines take prompt strings and their own flow-matching scheduler.
"""
from __future__ import annotations

import inspect
import logging
import re
from typing import Optional

from ...errors import InputError
from ...sampler_table import DEFAULT_SAMPLER, DEFAULT_SCHEDULE
from . import get, lookup

log = logging.getLogger("colab_sd.generation")

# A1111 prompt syntax that means something only to the SD prompt parser: (word:1.2), ((word)), BREAK,
# [from:to:when], [a|b]; a transformer family's pipeline gets the prompt string as it is
_A1111_SYNTAX = re.compile(r"\([^()]*:\s*-?[\d.]+\s*\)|\(\(|\bBREAK\b|\[[^\[\]]*[:|][^\[\]]*\]")

# what a request gets when it leaves steps / CFG unset and the model's family is unknown
FALLBACK_STEPS, FALLBACK_CFG = 25, 7.0


def family_of(ref):
    """The `Family` (variant applied) of a resolved model."""
    return lookup(ref.family, getattr(ref, "variant", None))


def defaults(ref, req):
    """The request with unset steps / CFG (None) filled from the model's family."""
    fam = get(ref.family)
    fam = fam.for_variant(getattr(ref, "variant", None)) if fam else None
    steps = req.steps if req.steps is not None else (fam.steps if fam else FALLBACK_STEPS)
    cfg = req.cfg if req.cfg is not None else (fam.cfg if fam else FALLBACK_CFG)
    return req.replace(steps=steps, cfg=cfg)


def parts_for(ref, fam, root, config=None):
    """The memory plan's `Part`s, sized from headers: the model file (or each component folder of a diffusers
    folder) and the components the library has; a component still to be fetched counts with its known size."""
    from pathlib import Path

    from .. import components
    from ..memory_plan import Part

    path = Path(ref.path)
    if path.is_dir():
        parts = []
        for role in ["transformer"] + [c.role for c in fam.components]:
            folder = path / role
            if folder.is_dir():
                params, stored = components.weights_of(folder)
                size = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
                parts.append(Part(role, params, size, stored))
        return parts
    from .bundle import part_sizes

    inside = part_sizes(fam, path)
    if "transformer" in inside:  # a bundle: the denoiser and each embedded part sized by their own keys
        params, size, stored = inside["transformer"]
        parts = [Part("transformer", params, size, stored)]
    else:
        params, stored = components.weights_of(path)
        parts = [Part("transformer", params, path.stat().st_size, stored)]
    for comp in fam.components:
        if comp.role in inside:
            parts.append(Part(comp.role, *inside[comp.role]))
            continue
        found = components.find(comp, Path(root), config) if config is not None else None
        if found is not None:
            c_params, c_stored = components.weights_of(found)
            parts.append(Part(comp.role, c_params, found.stat().st_size, c_stored))
        else:  # to be fetched: sized as its source says (params from bytes, bf16 assumed; fp8 files: 1 byte)
            size = components.remote_size(comp)
            per = 1 if "fp8" in comp.file else 2
            parts.append(Part(comp.role, min(comp.params, size / per / 1e9), size, "fp8" if per == 1 else "bf16"))
    return parts


def plan(ref, req, device: str, root):
    """The memory plan for this model on this machine; InputError (one line, before loading) when the family
    is not loadable by colab_sd or the plan cannot fit. None for the UNet families (loaded as before)."""
    from ..memory_plan import Machine, decide

    from ...library import models_root
    from .load import config_folder

    fam = family_of(ref)
    if not fam.is_transformer:
        return None
    try:
        config = config_folder(fam, req.config)
    except Exception:  # no config yet: the loader says so; the plan uses the known component sizes
        config = None
    machine = Machine.detect(device)
    # the request may force the plan (placement, encoder precision): a forced plan that cannot fit is refused
    placement = req.placement or ("model_offload" if req.low_vram else None)
    ignored = bool(placement or req.text_encoder_precision) and not machine.cuda
    if ignored:
        placement = None  # offloading and 8/4-bit encoders need a GPU: on the CPU there is one plan
    chosen = decide(fam, parts_for(ref, fam, models_root(root), config), machine, dtype=req.dtype or None,
                    placement=placement, text_encoder=req.text_encoder_precision or None, width=req.width or 0,
                    height=req.height or 0, label=f"{fam.name} ({ref.name})")
    if ignored:
        import dataclasses

        chosen = dataclasses.replace(chosen, line=chosen.line + " (low_vram / placement / text encoder precision "
                                                                "need a GPU: ignored)")
    if not fam.supported:
        # "it would fit" alone read as if it were about to run: say that room is not what is missing
        why = chosen.line if not chosen.fits else f"this machine has room for it, but colab_sd has no loader for it " \
                                                  f"({chosen.line})"
        raise InputError(f"{ref.name} is {fam.name} ({fam.params:g}B parameters), which colab_sd does not load yet; "
                         f"{why}")
    if not chosen.fits:
        raise InputError(chosen.line)
    return chosen


def call_kwargs(fam, pipe, prompt: str, negative: str, req, cfg: float) -> dict:
    """The pipeline call's fixed arguments for a transformer family, keeping only what the pipeline accepts."""
    accepted = set(inspect.signature(pipe.__call__).parameters)
    _check_sides(fam, pipe, req)
    call = dict(prompt=prompt, num_inference_steps=req.steps, guidance_scale=cfg,
                num_images_per_prompt=req.batch_size, width=req.width, height=req.height, output_type="pil")
    if fam.negative and negative and "negative_prompt" in accepted:
        call["negative_prompt"] = negative
    elif negative:
        log.info("%s uses no negative prompt; it is ignored", fam.name)
    if fam.max_sequence_length and "max_sequence_length" in accepted:
        call["max_sequence_length"] = fam.max_sequence_length
    return {k: v for k, v in call.items() if k in accepted}


def _check_sides(fam, pipe, req) -> None:
    """InputError for a width / height the pipeline cannot take as it is: these transformers see the latents in 2×2
    patches, so a side must be a multiple of twice the VAE's factor (16 px at full size; 1080 is not). Z-Image's
    pipeline raised a bare ValueError, Flux's resized silently (the infotext then kept the asked size)."""
    multiple = int(getattr(pipe, "vae_scale_factor", 8) or 8) * 2
    for label, side in (("width", req.width), ("height", req.height)):
        if isinstance(side, int) and side % multiple:
            lower, upper = max(side // multiple * multiple, multiple), side // multiple * multiple + multiple
            raise InputError(f"{label} {side} is not a multiple of {multiple}, which {fam.name} needs: use {lower} or "
                             f"{upper}")


def infotext(fam, cfg: float) -> dict:
    """A1111/Forge infotext fields for a transformer family: Forge writes Flux as `Sampler: Euler, Schedule
    type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5`; the shift where the family fixes one."""
    if not fam.is_transformer:
        return {}
    fields = {"Sampler": "Euler", "Schedule type": "Simple"}
    if not fam.clip_skip:  # ignored (said in notes), so not recorded as if it had been applied
        fields["Clip skip"] = None
    if fam.guidance == "distilled":
        fields.update({"CFG scale": 1, "Distilled CFG Scale": cfg})
    if fam.shift is not None:
        fields["Shift"] = fam.shift
    return fields


def notes(fam, req, negative: str) -> list[str]:
    """One-line notes about request fields this family ignores (shown as Info events)."""
    out = []
    if negative and not fam.negative:
        out.append(f"{fam.name} uses no negative prompt: it is ignored")
    if req.clip_skip > 1 and not fam.clip_skip:
        out.append(f"clip skip does not apply to {fam.name}: ignored")
    if fam.guidance == "none" and req.cfg not in (0, 0.0, 1, 1.0, fam.cfg):
        out.append(f"{fam.name} ignores the guidance scale ({req.cfg:g})")
    # Euler / Simple is what these families run (and what their infotext says), so an image read back is quiet
    if fam.sampler != "sd" and (req.sampler not in (DEFAULT_SAMPLER, "Euler")
                                or req.schedule not in (DEFAULT_SCHEDULE, "Simple")):
        out.append(f"{fam.name} samples with its own flow-matching Euler: sampler {req.sampler} / schedule "
                   f"{req.schedule} ignored")
    if fam.is_transformer and _A1111_SYNTAX.search(req.prompt or ""):
        out.append(f"{fam.name} reads the prompt as plain text: A1111 weights, BREAK and [from:to:when] / [a|b] "
                   f"are not applied (they reach its text encoder as written)")
    from .second import notes as second_notes

    return out + second_notes(fam, req)


def refuse_img2img(fam, req) -> Optional[str]:
    """Why this request's init image, mask or hires fix cannot run with `fam` (one line), or None
    (`second.refusal`: inpainting is SD-only; img2img / hires need the family's image-to-image pipeline)."""
    from .second import refusal

    return refusal(fam, req)


def torch_dtype(name: str):
    """torch's dtype for a plan's "fp16" / "bf16" / "fp32"."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]
