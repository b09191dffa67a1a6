"""A1111 prompt syntax that is not text for the model: `<lora:name:0.8>` (and `<lyco:…>`, `<hypernet:…>`).

The tags are removed from the text the model sees and returned as LoRA specs; the original prompt (tags kept)
is what the PNG metadata records, as A1111 does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError

# <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (A1111's separate text-encoder weight: the first one is used).
_TAG = re.compile(r"<(lora|lyco|hypernet):([^:>]+)(?::([^:>]*))?(?::([^>]*))?>", re.IGNORECASE)


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA by library name (or path) and its weight."""

    name: str
    weight: float = 1.0

    @classmethod
    def parse(cls, value) -> "LoraSpec":
        """From a LoraSpec, a (name, weight) pair, a dict, or "name:0.8" (CLI form)."""
        if isinstance(value, LoraSpec):
            return value
        if isinstance(value, dict):
            return cls(str(value.get("name", "")).strip(), _weight(value.get("weight", 1.0), value))
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(str(value[0]).strip(), _weight(value[1], value))
        if isinstance(value, str):
            name, sep, weight = value.strip().rpartition(":")
            if sep and _is_number(weight):
                return cls(name.strip(), _weight(weight, value))
            return cls(value.strip(), 1.0)
        raise InputError(f"cannot read LoRA {value!r}: give a name, \"name:0.8\" or (name, 0.8)")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _weight(value, whole) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"LoRA weight in {whole!r} is not a number: write it like name:0.8") from None


def extract_loras(prompt: str) -> tuple[str, list[LoraSpec]]:
    """(prompt without LoRA tags, LoRA specs in order). Hypernetwork tags are refused: diffusers has none."""
    specs: list[LoraSpec] = []

    def take(match: re.Match) -> str:
        kind, name, weight = match.group(1).lower(), match.group(2).strip(), match.group(3)
        if kind == "hypernet":
            raise InputError(f"hypernetworks are not supported (<hypernet:{name}>): remove the tag or use a LoRA")
        if weight in (None, ""):
            value = 1.0
        elif _is_number(weight):
            value = float(weight)
        else:
            raise InputError(f"LoRA weight in {match.group(0)!r} is not a number: write it like <lora:{name}:0.8>")
        specs.append(LoraSpec(name, value))
        return ""

    # As A1111: each tag becomes "" and the text around it (commas, spaces) stays, so the conditioning matches.
    text = _TAG.sub(take, prompt)
    return text, specs


def merge_loras(*groups) -> list[LoraSpec]:
    """One spec per LoRA name; a later mention overrides an earlier weight (prompt tags win over the request).

    Ordered as the recorded prompt lists them — the last group's (the prompt's tags) first, then the others' in
    their order, which the infotext appends as tags — so that `Lora hashes` follows the tags, as A1111 writes it,
    and an image read back (all tags then) applies and records them in the same order."""
    merged: dict[str, LoraSpec] = {}
    for group in groups:
        for spec in group:
            merged[spec.name] = spec
    first = [spec.name for spec in groups[-1]] if groups else []
    return [merged[name] for name in dict.fromkeys(first + list(merged))]


def words(text: str) -> set[str]:
    """Candidate embedding names in a prompt: word-like runs, with their weight syntax stripped."""
    return set(re.findall(r"[\w][\w.\-]*[\w]|[\w]", text))
