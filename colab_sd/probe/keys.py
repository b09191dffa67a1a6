"""What the rules share: reading shapes from a key → shape map, the `Verdict` they build, and the family hints
in modelspec / kohya metadata (which the keys outrank)."""
from __future__ import annotations

import re
from typing import Iterable, Optional

from ..library import KINDS
from .result import Probe


def shape_of(shapes: dict, key: str):
    value = shapes.get(key)
    return list(value) if isinstance(value, (list, tuple)) else None


def dim(shapes: dict, key: Optional[str], index: int) -> Optional[int]:
    shape = shape_of(shapes, key) if key else None
    if not shape:
        return None
    try:
        return shape[index]
    except IndexError:
        return None


def has_prefix(keys: Iterable[str], *prefixes: str) -> Optional[str]:
    for k in keys:
        if k.startswith(prefixes):
            return k
    return None


def has_part(keys: Iterable[str], *parts: str) -> Optional[str]:
    for k in keys:
        if any(p in k for p in parts):
            return k
    return None


def cross_attn(shapes: dict, keys: Iterable[str]) -> tuple[Optional[int], Optional[str]]:
    """Context width of a UNet's cross-attention (to_k in-features), and the key it came from."""
    for k in keys:
        if k.endswith("attn2.to_k.weight"):
            width = dim(shapes, k, 1)
            if width:
                return width, k
    return None, None


def fmt_shape(shapes: dict, key: str) -> str:
    shape = shape_of(shapes, key)
    return f" {shape}" if shape is not None else ""


def width_family(width: Optional[int]) -> Optional[str]:
    return {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}.get(width)


def _family_from_words(text: str) -> Optional[str]:
    """The family an architecture string names ("stable-diffusion-xl-v1-base/lora", "sd_v1", "flux1", …)."""
    for pattern, family in ((r"flux[._ -]?2|klein", "flux2"), (r"chroma", "chroma"), (r"z[._ -]?image", "zimage"),
                            (r"flux", "flux"), (r"cascade", "sd-cascade"),
                            (r"xl.*refiner|refiner.*xl", "sdxl-refiner"),
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
