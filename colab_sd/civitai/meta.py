"""An image's generation data → request fields and the resources it used.

Two inputs, one result: the API image `meta` (a loose object whose A1111 keys pass through verbatim; reference
civitai-api.md §3) and an A1111 "parameters" text read from a file (which CivitAI's own generator extends with
`Civitai resources: [...]`). Every key is optional; what cannot be used becomes a note, never an error.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

# CivitAI's resource `type` words → the library kind the resource goes to.
_ROLE = {"checkpoint": "checkpoint", "model": "checkpoint", "lora": "lora", "locon": "lora", "lycoris": "lora",
         "dora": "lora", "embed": "embedding", "embedding": "embedding", "textualinversion": "embedding",
         "vae": "vae"}
_AIR = re.compile(r"urn:air:[\w.-]+:(?P<type>[\w.-]+):civitai:(?P<model>\d+)@(?P<version>\d+)", re.IGNORECASE)
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)(?::([-\d.]+))?(?::[^>]*)?>", re.IGNORECASE)
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
        return f"{self.role} {what}"


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


def _size(meta: Mapping[str, Any]) -> tuple[Optional[int], Optional[int]]:
    m = re.match(r"\s*(\d+)\s*[x×]\s*(\d+)", str(meta.get("Size") or ""))
    if m:
        return int(m.group(1)), int(m.group(2))
    return _number(meta.get("width"), int), _number(meta.get("height"), int)


def _fields(meta: Mapping[str, Any], notes: list) -> dict:
    prompt = str(meta.get("prompt") or "")
    fields: dict = {"prompt": _LORA_TAG.sub("", prompt).strip().strip(",").strip(),
                    "negative_prompt": str(meta.get("negativePrompt") or meta.get("negative_prompt") or "")}
    steps, cfg = _number(meta.get("steps"), int), _number(meta.get("cfgScale"))
    seed = _number(meta.get("seed"), int)
    clip = _number(meta.get("clipSkip") or meta.get("Clip skip"), int)
    width, height = _size(meta)
    fields.update({k: v for k, v in (("steps", steps), ("cfg", cfg), ("seed", seed), ("clip_skip", clip),
                                     ("width", width), ("height", height)) if v is not None})
    sampler, schedule = meta.get("sampler"), meta.get("Schedule type") or meta.get("scheduler")
    if sampler:
        from ..generation.samplers import resolve_sampler  # torch-free

        try:
            found, sched = resolve_sampler(str(sampler), str(schedule) if schedule else None)
            fields["sampler"], fields["schedule"] = found.name, sched
        except Exception:  # InputError: a sampler colab_sd does not have
            notes.append(f"sampler {sampler!r}{f' ({schedule})' if schedule else ''} is not one colab_sd has: "
                         "the default sampler is used")
    strength = _number(meta.get("Denoising strength"))
    if meta.get("Hires upscale") or meta.get("Hires upscaler"):
        notes.append(f"the image used hires fix ({meta.get('Hires upscaler') or 'upscale'} x"
                     f"{meta.get('Hires upscale') or '?'}, denoise {strength}): recreated without it")
    if meta.get("comfy") and not prompt:
        notes.append("the image was made with a ComfyUI workflow: only A1111-style settings are read")
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


def from_meta(meta: Optional[Mapping[str, Any]]) -> Generation:
    """The API image `meta` (flat or nested `{id, meta}`) → request fields and resources."""
    meta = dict(meta or {})
    if isinstance(meta.get("meta"), Mapping) and "prompt" not in meta:
        meta = dict(meta["meta"])  # the nested shape of imageId look-ups without flatMeta
    notes: list[str] = []
    fields = _fields(meta, notes)
    found = _Resources()
    for r in meta.get("civitaiResources") or []:
        if isinstance(r, Mapping):
            found.add(_role(r.get("type")), weight=r.get("weight"),
                      version_id=r.get("modelVersionId"))
    for r in meta.get("additionalResources") or []:
        if isinstance(r, Mapping):
            air = _AIR.search(str(r.get("air") or r.get("name") or ""))
            found.add(_role(air.group("type") if air else r.get("type")), weight=r.get("strength"),
                      version_id=air.group("version") if air else None,
                      name=None if air else r.get("name"))
    for r in meta.get("resources") or []:
        if isinstance(r, Mapping):
            found.add(_role(r.get("type")), name=r.get("name"), weight=r.get("weight"), digest=r.get("hash"))
    hashes = meta.get("hashes") if isinstance(meta.get("hashes"), Mapping) else {}
    for key, digest in hashes.items():
        kind, _, name = str(key).partition(":")
        found.add("checkpoint" if kind == "model" else _role(kind), name=name or None, digest=digest)
    if meta.get("Model hash") or meta.get("Model"):
        found.add("checkpoint", name=meta.get("Model"), digest=meta.get("Model hash"))
    for key, role in (("Lora hashes", "lora"), ("TI hashes", "embedding")):
        for name, digest in _hash_list(meta.get(key)).items():
            found.add(role, name=name, digest=digest)
    if meta.get("VAE") or meta.get("VAE hash"):
        found.add("vae", name=meta.get("VAE"), digest=meta.get("VAE hash"))
    for name, weight in _LORA_TAG.findall(str(meta.get("prompt") or "")):
        found.add("lora", name=name, weight=weight or 1.0)
    for item in found.items:
        if item.role == "lora" and item.weight is None:
            item.weight = 1.0
    if not meta.get("prompt"):
        notes.append("the image carries no prompt (no generation data): nothing to recreate from it"
                     if not found.items else "the image carries no prompt: only its resources are known")
    return Generation(fields, _ordered(found.items), notes)


def _ordered(items: list) -> list:
    order = {"checkpoint": 0, "vae": 1, "lora": 2, "embedding": 3}
    return sorted(items, key=lambda w: order.get(w.role, 9))


def _hash_list(value: Any) -> dict:
    """`"name: hash, name2: hash"` (Lora hashes / TI hashes) as a dict."""
    out = {}
    for part in str(value or "").split(","):
        name, _, digest = part.strip().rpartition(":")
        if name.strip():
            out[name.strip()] = digest.strip()
    return out


# ---------------------------------------------------------------------------------------------- infotext

_CIVITAI_RESOURCES = re.compile(r",?\s*Civitai resources:\s*(\[.*?\])\s*(?=,\s*[\w ]+:|$)", re.DOTALL)
_INFOTEXT_KEYS = {"Negative prompt": "negativePrompt", "Steps": "steps", "Sampler": "sampler", "CFG scale": "cfgScale",
                  "Seed": "seed"}


def infotext_to_meta(text: str) -> dict:
    """An A1111 "parameters" text → a dict shaped like the API `meta` (so one reader serves both)."""
    from ..generation.metadata import parse_parameters  # torch-free

    resources = []
    m = _CIVITAI_RESOURCES.search(text or "")
    if m:
        try:
            resources = json.loads(m.group(1))
        except ValueError:
            resources = []
        text = text[:m.start()] + text[m.end():]
    parsed = parse_parameters(text or "")
    meta: dict = {"prompt": parsed.pop("prompt", ""), "negativePrompt": parsed.pop("negative_prompt", "")}
    for key, value in parsed.items():
        meta[_INFOTEXT_KEYS.get(key, key)] = value
    if isinstance(resources, list):
        meta["civitaiResources"] = [r for r in resources if isinstance(r, dict)]
    return meta
