"""Whole-model single files ("bundles"): Comfy-Org's `flux1-dev-fp8.safetensors`, Stability's
`sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors`, CivitAI "all in one" checkpoints. They hold the denoiser under
`model.diffusion_model.` beside its text encoders (`text_encoders.clip_l|clip_g|t5xxl.transformer.`) and VAE
(`vae.` or `first_stage_model.`), the way ComfyUI saves checkpoints.

`embedded(fam, path)` says, from the header alone, which of the family's components the file already holds, so that
only the others are looked for in the library or fetched; the pipeline is then built by diffusers'
`Pipeline.from_single_file` (which reads CLIP, T5 and the KL VAE out of such a file: diffusers
`loaders/single_file_utils.py`, `create_diffusers_clip_model_from_ldm` / `create_diffusers_t5_model_from_checkpoint`).

Not taken from the file, so found or fetched as for a transformer-only file:
- a text encoder stored as ComfyUI *scaled* fp8 (`….scale_weight` keys): diffusers drops the scales and the encoder
  would silently encode something else;
- encoders diffusers does not read from a bundle (Qwen3 in Z-Image / Klein all-in-ones);
- anything in a family without `Pipeline.from_single_file` (Flux.2 Klein).
"""
from __future__ import annotations

from pathlib import Path

from .fp8 import BUNDLE_DENOISER, is_scale_key

# probe arch → the key prefix a ComfyUI bundle stores that component under
PREFIXES = {
    "clip-l": ("text_encoders.clip_l.transformer.",),
    "clip-g": ("text_encoders.clip_g.transformer.",),
    "t5-xxl": ("text_encoders.t5xxl.transformer.",),
    "vae-kl16": ("vae.", "first_stage_model."),
}


def _header(fam, path) -> tuple[dict, dict]:
    """(shapes, dtypes) of a file that may be a bundle; empty for GGUF files, folders and families without
    `Pipeline.from_single_file`. One header read serves every question below."""
    from .. import components

    path = Path(path)
    if not fam.single_file_pipeline or path.is_dir() or path.suffix.lower() == ".gguf":
        return {}, {}
    shapes, dtypes, _ = components.header(path)
    return shapes, dtypes


def _held(fam, keys) -> tuple[dict, list]:
    """(role → prefix of the components diffusers can build from these keys, labels of those stored as ComfyUI
    scaled fp8, which it cannot: their scales would be dropped)."""
    usable, scaled = {}, []
    for comp in fam.components:
        for prefix in PREFIXES.get(comp.arch, ()):
            inside = [k for k in keys if k.startswith(prefix)]
            if inside:
                if any(is_scale_key(k) for k in inside):
                    scaled.append(comp.label)
                else:
                    usable[comp.role] = prefix
                break
    return usable, scaled


def held(fam, path) -> tuple[dict, list]:
    """(role → key prefix of every component of `fam` that the file at `path` holds and diffusers can build from
    it, labels of the components it holds as ComfyUI scaled fp8, to be taken from elsewhere). Header only."""
    return _held(fam, list(_header(fam, path)[0]))


def embedded(fam, path) -> dict:
    """role → key prefix of the components the file holds and diffusers can build (`held`'s first half)."""
    return held(fam, path)[0]


def part_sizes(fam, path) -> dict:
    """role → (parameters in billions, bytes, stored dtype) of the denoiser ("transformer") and each usable embedded
    component, from the header: what the memory plan sizes a bundle by (its whole size would count everything as
    the denoiser). Empty when the file holds no denoiser under `model.diffusion_model.`."""
    from .. import components

    shapes, dtypes = _header(fam, path)
    groups = {"transformer": BUNDLE_DENOISER, **_held(fam, list(shapes))[0]}
    out = {}
    for role, start in groups.items():
        count, nbytes, types = 0, 0, {}
        for key, shape in shapes.items():
            if not key.startswith(start):
                continue
            n = 1
            for d in shape or ():
                n *= int(d)
            count += n
            nbytes += n * _width(dtypes.get(key))
            types[key] = dtypes.get(key)
        if count:
            out[role] = (count / 1e9, nbytes, components.stored_dtype(types))
    return out


def _width(dtype) -> int:
    return {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}.get(str(dtype), 2)
