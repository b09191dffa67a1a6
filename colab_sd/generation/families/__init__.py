"""The families registry: one `Family` per probe verdict, looked up by family id and variant.

Adding a family is adding an entry (data, in `sd.py` / `flow.py`) and its tiny test model; the engine, the
panel and the metadata writer ask the entry (`pipeline`, `controls`, `steps`, `guidance`, …) instead of
testing family names. Light to import: no torch.

    from colab_sd.generation import families
    fam = families.lookup("flux", "schnell")      # Flux schnell: 4 steps, guidance ignored
    fam.controls["negative_prompt"]               # False
"""
from __future__ import annotations

from typing import Optional

from ...errors import InputError
from .base import GB, Component, Family
from .flow import ENTRIES as _FLOW
from .sd import ENTRIES as _SD
from .variants import decide as decide_variant

__all__ = ["Family", "Component", "GB", "REGISTRY", "lookup", "get", "supported_ids", "label", "decide_variant",
           "refusal"]

REGISTRY: dict[str, Family] = {f.id: f for f in _SD + _FLOW}


def get(family_id: Optional[str]) -> Optional[Family]:
    """The entry for a probe family id, or None when colab_sd knows nothing of it."""
    return REGISTRY.get(family_id or "")


def lookup(family_id: str, variant: Optional[str] = None) -> Family:
    """The entry with the variant applied; InputError for a family the registry does not know."""
    fam = get(family_id)
    if fam is None:
        raise InputError(f"colab_sd has no entry for the {family_id!r} model family")
    return fam.for_variant(variant)


def supported_ids() -> tuple[str, ...]:
    """Family ids colab_sd generates with (some of their variants may still be refused)."""
    return tuple(f.id for f in REGISTRY.values() if f.supported)


def label(family_id: Optional[str]) -> str:
    fam = get(family_id)
    return fam.label if fam else str(family_id)


def refusal(fam: Family, file_name: str) -> Optional[str]:
    """Why colab_sd will not generate with this (family, variant), or None when it will."""
    if fam.supported:
        return None
    if fam.variant in ("inpaint", "depth"):
        return (f"{file_name} is {fam.name}, an editing/conditioning model; colab_sd generates with plain "
                f"text-to-image Flux files (dev, schnell, Krea) for now")
    return None  # too big for any plan: the memory plan says why, with sizes (memory_plan.refuse_unsupported)
