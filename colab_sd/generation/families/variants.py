"""Variants a file cannot tell apart by its shapes (Flux dev / Krea / Kontext, Z-Image Turbo / Base, SD3.5 Large /
Large Turbo, Klein distilled / Base): decided by CivitAI's `baseModel` in the sidecar, then the file's metadata
(modelspec title / architecture), then words in the file name, else the family's default. Pure; no I/O.

The default follows InvokeAI's choices (reference §1): a Z-Image single file is Turbo, a Klein file distilled.
"""
from __future__ import annotations

import re
from typing import Optional

# family → [(variant, pattern, shape variants it may refine)]; the first match wins.
_WORDS = {
    "flux": [("kontext", r"kontext", ("dev",)), ("krea", r"krea", ("dev",))],
    "zimage": [("base", r"(?<![a-z])base(?![a-z])|zimagebase", ("turbo",)), ("turbo", r"turbo", ("turbo",))],
    "sd3": [("3.5-large-turbo", r"turbo", ("3.5-large",))],
    "flux2": [("klein-4b-base", r"(?<![a-z])base(?![a-z])", ("klein-4b",))],
}
# the variant when shapes say nothing finer
_DEFAULT = {"flux": "dev", "zimage": "turbo", "sd3": "medium", "flux2": "klein-4b"}
_METADATA_FIELDS = ("modelspec.title", "modelspec.architecture", "modelspec.description", "general.name")


def decide(family, shape_variant: Optional[str], file_name: str = "", sidecar: Optional[dict] = None,
           metadata: Optional[dict] = None) -> tuple[Optional[str], str]:
    """(variant, why) for a file of `family` (a `Family`) whose shapes gave `shape_variant` (or None).

    `sidecar` is the CivitAI sidecar dict (its `baseModel`, as CivitAI names base models, is trusted first);
    `metadata` the safetensors `__metadata__` / GGUF string fields.
    """
    base = shape_variant or _DEFAULT.get(family.id)
    if base is None:
        return None, ""
    rules = [r for r in _WORDS.get(family.id, []) if base in r[2]]
    if not rules:
        return base, _shape_reason(family, base, shape_variant)
    civitai = str((sidecar or {}).get("baseModel") or (sidecar or {}).get("base_model") or "").strip()
    if civitai:
        for variant in [base] + [r[0] for r in rules]:
            names = family.for_variant(variant).civitai
            if civitai.lower() in (n.lower() for n in names):
                return variant, f"{family.for_variant(variant).name}: CivitAI baseModel {civitai!r} in the sidecar"
    for key in _METADATA_FIELDS:
        text = str((metadata or {}).get(key) or "").lower()
        hit = _match(rules, text)
        if hit:
            return hit, f"{family.for_variant(hit).name}: metadata {key} = {text[:60]!r}"
    stem = file_name.lower()
    hit = _match(rules, stem)
    if hit:
        return hit, f"{family.for_variant(hit).name}: the file name says so ({file_name})"
    names = dict.fromkeys(family.for_variant(v).name for v in [base] + [r[0] for r in rules])  # once each
    return base, (f"{family.for_variant(base).name}: the default (shapes cannot tell "
                  f"{' / '.join(names)} apart; "
                  f"name the file or set baseModel in its sidecar to choose)")


def _match(rules, text: str) -> Optional[str]:
    if not text:
        return None
    for variant, pattern, _ in rules:
        if re.search(pattern, text):
            return variant
    return None


def _shape_reason(family, variant: str, shape_variant: Optional[str]) -> str:
    how = "from its shapes" if shape_variant else "the family default"
    return f"{family.for_variant(variant).name} ({how})"
