"""The family and variant of a library file, from its header (and sidecar), for listings: no torch, no loading.

`identify(path, meta)` is what `colab-sd models` and the Library show for files without a CivitAI sidecar
(copied in by hand): the probe's family, and for transformer families the variant decided the way generation
decides it (shapes, then sidecar `baseModel`, metadata, file name).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import decide_variant, get


def identify(path, meta: Optional[dict] = None) -> dict:
    """{"family": id or None, "variant": str or None, "family_label": "Flux dev" / "SDXL" / None}."""
    from ... import probe
    from ...errors import ColabSDError

    path = Path(path)
    try:
        found = probe.inspect(path)
    except (ColabSDError, OSError):
        return {"family": None, "variant": None, "family_label": None}
    if found.kind is None and any("truncated" in str(r) for r in found.reasons):  # a cut download (any format)
        return {"family": None, "variant": None, "family_label": "damaged (truncated: download it again)"}
    fam = get(found.family)
    variant = found.variant
    if fam is not None and fam.is_transformer and found.kind == "checkpoint":
        variant, _why = decide_variant(fam, found.variant, path.name, meta or {}, found.metadata)
    if found.kind == "text_encoder":
        label = {"t5-xxl": "T5-XXL", "clip-l": "CLIP-L", "clip-g": "CLIP-G", "qwen3": "Qwen3"}.get(variant)
    elif fam is not None and found.kind == "checkpoint":
        label = fam.for_variant(variant).name
    elif fam is not None:  # a LoRA or VAE is for the family, not for one variant ("Flux.1", not "Flux dev")
        label = fam.label
    else:
        from ...probe import FAMILY_NAMES

        label = FAMILY_NAMES.get(found.family) if found.family else None
    return {"family": found.family, "variant": variant, "family_label": label}
