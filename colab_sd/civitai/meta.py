"""An image's generation data → request fields and the resources it used.

The reading itself is the infotext module's (`colab_sd.infotext`): a file's A1111 "parameters" (PNG chunk, EXIF
UserComment) or the API image `meta` (`from_civitai_meta`), both as one dict with the request's field names.
This module turns that dict into GenerationRequest fields and the list of resources to find: CivitAI's own
`civitaiResources` / `additionalResources` (version ids), then hashes (AutoV2, SHA256), then names. Every key is
optional; what cannot be used becomes a note, never an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

# CivitAI's resource `type` words → the library kind the resource goes to.
_ROLE = {"checkpoint": "checkpoint", "model": "checkpoint", "lora": "lora", "locon": "lora", "lycoris": "lora",
         "dora": "lora", "embed": "embedding", "embedding": "embedding", "textualinversion": "embedding",
         "vae": "vae"}
_AIR = re.compile(r"urn:air:[\w.-]+:(?P<type>[\w.-]+):civitai:(?P<model>\d+)@(?P<version>\d+)", re.IGNORECASE)
_LORA_TAG = re.compile(r"<(?:lora|lyco):[^<>]*>", re.IGNORECASE)
_HEX = re.compile(r"^(?:0x)?([0-9a-fA-F]{8,64})$")


@dataclass
class Wanted:
    """One resource an image used; `version_id` or `hashes` or `name` identify it (best first)."""

    role: str  # checkpoint, lora, embedding, vae
    name: Optional[str] = None
    weight: Optional[float] = None
    version_id: Optional[int] = None
    hashes: list = field(default_factory=list)  # upper-case hex (AutoV2 10, SHA256 64, …)

    def label(self) -> str:
        what = self.name or (f"version {self.version_id}" if self.version_id else
                             (f"hash {self.hashes[0]}" if self.hashes else "?"))
        return what


@dataclass
class Generation:
    """Request fields (GenerationRequest names) plus the resources to find, and notes for the user."""

    fields: dict
    resources: list
    notes: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.fields.get("prompt") and not self.resources


def _hash(value: Any) -> Optional[str]:
    m = _HEX.match(str(value or "").strip())
    return m.group(1).upper() if m else None


def _number(value: Any, cast=float):
    if value in (None, "") or isinstance(value, bool):
        return None
    text = str(value).strip()
    try:  # int() first: a 64-bit seed must not pass through a float
        return cast(int(text)) if cast is int and re.fullmatch(r"-?\d+", text) else cast(float(text))
    except (TypeError, ValueError, OverflowError):
        return None


def _role(word: Any) -> Optional[str]:
    return _ROLE.get(re.sub(r"[^a-z]", "", str(word or "").lower()))


def _fields(params: Mapping[str, Any], notes: list) -> dict:
    """GenerationRequest fields from the infotext dict; the `<lora:…>` tags leave the prompt (LoRAs are listed)."""
    prompt = str(params.get("prompt") or "")
    cleaned = re.sub(r"[ \t]{2,}", " ", re.sub(r"\s*,\s*,", ",", _LORA_TAG.sub("", prompt)))
    fields: dict = {"prompt": cleaned.strip().strip(",").strip(),
                    "negative_prompt": str(params.get("negative_prompt") or "")}
    for key, cast in (("steps", int), ("cfg", float), ("seed", int), ("clip_skip", int), ("width", int),
                      ("height", int)):
        value = _number(params.get(key), cast)
        if value is not None:
            fields[key] = value
    sampler, schedule = params.get("sampler"), params.get("schedule")
    if sampler:
        from ..generation.samplers import resolve_sampler  # torch-free

        try:
            found, sched = resolve_sampler(str(sampler), str(schedule) if schedule else None)
            fields["sampler"], fields["schedule"] = found.name, sched
        except Exception:  # InputError: a sampler (or schedule) colab_sd does not have
            notes.append(f"sampler {sampler!r}{f' ({schedule})' if schedule else ''} is not one colab_sd has: "
                         "the default sampler is used")
    from ..generation.reuse import hires_fields  # torch-free; the same mapping `generate --from` uses

    hires_fields(params, fields, notes)  # hires fix is recreated too (A1111's Hires keys → hires_* fields)
    if params.get("source") == "comfyui":
        notes.append("the image was made with a ComfyUI workflow: only its main settings are read")
    return fields


class _Resources:
    """Collects resources from every place the meta names them, merging repeats."""

    def __init__(self):
        self.items: list[Wanted] = []

    def add(self, role: Optional[str], *, name=None, weight=None, version_id=None, digest=None) -> None:
        if role is None:
            return
        digest = _hash(digest)
        name = str(name).strip() if name else None
        version_id = _number(version_id, int)
        for item in self.items:
            same = (version_id and item.version_id == version_id) or (digest and digest in item.hashes) or (
                name and item.name and item.name.lower() == name.lower() and item.role == role)
            if same and item.role == role:
                item.name = item.name or name
                item.version_id = item.version_id or version_id
                item.weight = item.weight if item.weight is not None else _number(weight)
                if digest and digest not in item.hashes:
                    item.hashes.append(digest)
                return
        self.items.append(Wanted(role, name, _number(weight), version_id, [digest] if digest else []))


def from_parameters(params: Optional[Mapping[str, Any]]) -> Generation:
    """The infotext dict (`colab_sd.infotext.read_parameters` / `from_civitai_meta`) → fields and resources."""
    params = dict(params or {})
    notes: list[str] = []
    fields = _fields(params, notes)
    found = _Resources()
    extra = params.get("extra") or {}
    for r in params.get("civitai_resources") or []:
        if isinstance(r, Mapping):
            found.add(_role(r.get("type")), weight=r.get("weight"), version_id=r.get("modelVersionId"))
    for r in extra.get("additionalResources") or []:
        if isinstance(r, Mapping):
            air = _AIR.search(str(r.get("air") or r.get("name") or ""))
            found.add(_role(air.group("type") if air else r.get("type")), weight=r.get("strength"),
                      version_id=air.group("version") if air else None, name=None if air else r.get("name"))
    for r in extra.get("resources") or []:
        if isinstance(r, Mapping):
            found.add(_role(r.get("type")), name=r.get("name"), weight=r.get("weight"), digest=r.get("hash"))
    if params.get("model") or params.get("model_hash"):
        found.add("checkpoint", name=params.get("model"), digest=params.get("model_hash"))
    if params.get("vae") or params.get("vae_hash"):
        found.add("vae", name=params.get("vae"), digest=params.get("vae_hash"))
    for item in params.get("loras") or []:
        found.add("lora", name=item.get("name"), weight=item.get("weight"), digest=item.get("hash"))
    for item in params.get("embeddings") or []:
        found.add("embedding", name=item.get("name"), digest=item.get("hash"))
    for item in found.items:
        if item.role == "lora" and item.weight is None:
            item.weight = 1.0
    if not params.get("prompt"):
        notes.append("the image carries no prompt (no generation data): nothing to recreate from it"
                     if not found.items else "the image carries no prompt: only its resources are known")
    return Generation(fields, _ordered(found.items), notes)


def from_meta(meta: Optional[Mapping[str, Any]]) -> Generation:
    """The API image `meta` (flat or nested `{id, meta}`) → fields and resources."""
    from ..infotext import from_civitai_meta

    return from_parameters(from_civitai_meta(dict(meta or {})) if meta else None)


def _ordered(items: list) -> list:
    order = {"checkpoint": 0, "vae": 1, "lora": 2, "embedding": 3}
    return sorted(items, key=lambda w: order.get(w.role, 9))
