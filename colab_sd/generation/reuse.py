"""Settings read from an image → generation request fields, with the image's model, LoRAs, VAE and embeddings
found in the library by hash first, then by name; what is not there is named. No torch.

    from colab_sd.infotext import read_parameters
    from colab_sd.generation.reuse import request_from_parameters

    plan = request_from_parameters(read_parameters("00001.png"), models_dir="/content/models")
    plan.fields     # {"prompt": …, "model": "dreamshaper_8.safetensors", "sampler": "DPM++ 2M", "seed": 1234, …}
    plan.missing    # [Resource(kind="lora", name="film", hash="0123456789ab", …)]: not in the library
    plan.notes      # ["sampler 'DPM++ 3M SDE' is not available here: DPM++ 2M is used", …]
    generate(**plan.fields)

Hash rules (a1111-parity.md §6.1, civitai-api.md): a checkpoint's or VAE's `Model hash` is AutoV2 (10 hex of the
file's sha256) or, in old files, AutoV1 (8 hex); `Lora hashes` is AutoV3 (12 hex of the safetensors addnet hash) in
A1111, AutoV2 in CivitAI's `Hashes`; `TI hashes` are 12 hex of the sha256. Any of them matches by prefix. The
sidecar's sha256 is used when the download recorded it; otherwise a file is hashed (once: written back to its
sidecar) only when `compute_hashes` is on and no known hash or name matched.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..library import ModelEntry, find_model, list_models, models_root, without_extension
from . import metadata
from .request import GenerationRequest
from .samplers import resolve_sampler

# Read-parameters field → the request fields that may take it (the first one the request has is used).
_HIRES = {"hires_scale": ("hires_scale", "hires_upscale"), "hires_steps": ("hires_steps",),
          "hires_upscaler": ("hires_upscaler",), "hires_resize_width": ("hires_resize_width", "hires_width"),
          "hires_resize_height": ("hires_resize_height", "hires_height"), "hires_sampler": ("hires_sampler",),
          "hires_prompt": ("hires_prompt",), "hires_negative_prompt": ("hires_negative_prompt",),
          "hires_cfg": ("hires_cfg",), "hires_schedule": ("hires_schedule",),
          "hires_checkpoint": ("hires_checkpoint",),
          "hires_distilled_cfg": ("hires_cfg",),  # after hires_cfg: Forge's Flux guidance wins over its CFG 1
          "denoising_strength": ("hires_denoise", "hires_strength", "hires_denoising_strength")}
_TAG = re.compile(r"<(lora|lyco):([^:<>]+)((?::[^<>]*)?)>", re.IGNORECASE)


@dataclass
class Resource:
    """One model file the image used: `found` is its library name when it is here; `how` is "hash", "name", or
    "name, another hash" (the library's file of that name has another hash: another version of it)."""

    kind: str  # checkpoint, lora, vae, embedding
    name: Optional[str]
    hash: Optional[str] = None
    weight: Optional[float] = None
    found: Optional[str] = None
    how: Optional[str] = None

    def label(self) -> str:
        known = self.name or "(unnamed)"
        return f"{self.kind} {known}" + (f" [{self.hash}]" if self.hash else "")


@dataclass
class Reuse:
    """What `request_from_parameters` made: request `fields`, every `resources` entry, and `notes` on what
    could not be carried over."""

    fields: dict
    resources: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def missing(self) -> list:
        return [r for r in self.resources if r.found is None]

    def missing_text(self) -> str:
        """One line naming what is missing ("" when nothing is)."""
        return "; ".join(r.label() for r in self.missing)

    def to_dict(self) -> dict:
        return {"fields": dict(self.fields), "resources": [dataclasses.asdict(r) for r in self.resources],
                "missing": [dataclasses.asdict(r) for r in self.missing], "notes": list(self.notes)}


def request_from_parameters(params: dict, models_dir=None, *, compute_hashes: bool = True) -> Reuse:
    """Turn `colab_sd.read_parameters` output (or `infotext.from_civitai_meta`) into GenerationRequest fields.

    Only fields the image gives are set (the request's defaults stand for the rest); LoRA tags in the prompt are
    renamed to the library's file when it was found under another name, and removed (and named in `missing`)
    when it is not there; the negative prompt is kept as written (A1111 does not apply tags there). Raises nothing
    for odd values: they become `notes`.
    """
    root = models_root(models_dir)
    finder = _Finder(root, compute_hashes)
    out = Reuse(fields={})
    fields = out.fields
    for key in ("steps", "cfg", "seed", "width", "height", "clip_skip"):
        if params.get(key) is not None:
            fields[key] = params[key]
    if params.get("distilled_cfg") is not None:  # a Forge Flux image: colab_sd's cfg is that guidance
        fields["cfg"] = params["distilled_cfg"]
    model = finder.find("checkpoint", params.get("model"), params.get("model_hash"))
    if model.name or model.hash:
        out.resources.append(model)
        if model.found:
            fields["model"] = model.found
    _sampler(params, fields, out.notes, quiet=_own_scheduler(root, model.found))
    if params.get("vae") or params.get("vae_hash"):
        vae = finder.find("vae", params.get("vae"), params.get("vae_hash"))
        out.resources.append(vae)
        if vae.found:
            fields["vae"] = vae.found
    loras = [finder.find("lora", item.get("name"), item.get("hash"), item.get("weight"))
             for item in params.get("loras") or []]
    out.resources.extend(loras)
    fields["prompt"] = _retag(params.get("prompt") or "", loras)
    fields["negative_prompt"] = params.get("negative_prompt") or ""  # A1111 leaves tags there as text
    for lora in loras:  # CivitAI's on-site generator lists LoRAs with weights, not as tags
        if lora.found and not _has_tag(params, lora.name):
            if lora.weight is None:
                out.notes.append(f"LoRA {lora.name} is only in the hashes, with no weight: not applied")
            else:
                fields.setdefault("loras", []).append((_bare(lora.found), lora.weight))
    for item in params.get("embeddings") or []:
        emb = finder.find("embedding", item.get("name"), item.get("hash"))
        out.resources.append(emb)
        if emb.found and _bare(emb.found).rsplit("/", 1)[-1] != emb.name:
            out.notes.append(f"embedding {emb.name} is in the library as {emb.found}: write that name in the prompt")
    hires_fields(params, fields, out.notes)
    return out


def _own_scheduler(root: Path, found: Optional[str]) -> bool:
    """Whether the library's model runs its own flow-matching scheduler (Flux, Z-Image…: sampler and schedule
    mean nothing there, so what the image says of them needs no note)."""
    if not found:
        return False
    from . import families
    from .families.identify import identify

    entry = find_model(root, "checkpoint", found)
    fam = families.get(identify(entry.path, entry.meta)["family"]) if entry is not None else None
    return fam is not None and fam.is_transformer


def _sampler(params: dict, fields: dict, notes: list, quiet: bool = False) -> None:
    sampler, schedule = params.get("sampler"), params.get("schedule")
    if not sampler and not schedule:
        return
    try:
        resolve_sampler(sampler, schedule)
    except InputError:
        try:
            chosen, _ = resolve_sampler(sampler, None)
        except InputError:
            if not quiet:
                notes.append(f"sampler {sampler!r} is not available here: the default sampler is used")
            return
        if not quiet:
            notes.append(f"{chosen.name} cannot follow the {schedule!r} schedule here: its automatic schedule is "
                         f"used")
        fields["sampler"] = chosen.name
        return
    if sampler:
        fields["sampler"] = sampler
    if schedule:
        fields["schedule"] = schedule


def hires_fields(params: dict, fields: dict, notes: list) -> None:
    """Copy an infotext dict's hires fix settings into request `fields` (A1111 keys → `hires_*`), noting in `notes`
    what this version cannot run, or that a denoising strength alone means the image came from img2img."""
    names = {f.name for f in dataclasses.fields(GenerationRequest)}
    hires = {k: params.get(k) for k in _HIRES if k != "denoising_strength" and params.get(k) is not None}
    strength = params.get("denoising_strength")
    if hires:
        if strength is not None:
            hires["denoising_strength"] = strength
        taken = []
        for key, value in hires.items():
            target = next((n for n in _HIRES[key] if n in names), None)
            if target:
                fields[target] = value
                taken.append(key)
        if len(taken) < len(hires):
            notes.append("hires fix settings (" + ", ".join(k for k in hires if k not in taken) +
                         ") are not carried over: this version cannot run them")
    elif strength is not None:
        notes.append(f"the image was made from another image (img2img, denoising strength {strength:g}); that "
                     f"image is not in the file: give it as the init image to redo it")


def _has_tag(params: dict, name: Optional[str]) -> bool:
    return any(m.group(2).strip() == name for m in _TAG.finditer(params.get("prompt") or ""))


def _retag(prompt: str, loras: list) -> str:
    """LoRA tags renamed to the library names found; tags of missing LoRAs removed."""
    by_name = {r.name: r for r in loras}

    def swap(match: re.Match) -> str:
        found = by_name.get(match.group(2).strip())
        if found is None or found.found is None:
            return "" if found is not None else match.group(0)
        return f"<{match.group(1)}:{_bare(found.found)}{match.group(3)}>"

    return _TAG.sub(swap, prompt)


class _Finder:
    """Library look-ups by hash prefix, then by name; entries are listed once per kind."""

    def __init__(self, root: Path, compute: bool):
        self.root, self.compute = root, compute
        self.entries: dict[str, list[ModelEntry]] = {}

    def find(self, kind: str, name, digest, weight=None) -> Resource:
        resource = Resource(kind, name if isinstance(name, str) and name else None,
                            _clean_hash(digest), weight if isinstance(weight, (int, float)) else None)
        entries = self.entries.setdefault(kind, list_models(self.root, [kind]) if self.root.is_dir() else [])
        match, how = None, None
        if resource.hash:
            match = next((e for e in entries if self._hash_matches(e, kind, resource.hash, compute=False)), None)
            how = "hash" if match else None
        if match is None and resource.name:
            match = _by_name(self.root, kind, resource.name)
            how = "name" if match else None
            if match is not None and resource.hash and (self.compute or metadata.sha256_of(match.path, False)):
                # one file: its hash settles whether the name found the very file or another version of it
                how = "hash" if self._hash_matches(match, kind, resource.hash, self.compute) else "name, another hash"
        if match is None and resource.hash and self.compute:
            match = next((e for e in entries if self._hash_matches(e, kind, resource.hash, compute=True)), None)
            how = "hash" if match else None
        if match is not None:
            resource.found, resource.how = match.name, how
        return resource

    @staticmethod
    def _hash_matches(entry: ModelEntry, kind: str, wanted: str, compute: bool) -> bool:
        if not entry.path.is_file():
            return False
        sha = metadata.sha256_of(entry.path, compute)
        if sha and sha.startswith(wanted):
            return True
        if kind == "lora":
            v3 = metadata.lora_hash(entry.path, compute)
            if v3 and (v3.startswith(wanted) or wanted.startswith(v3)):
                return True
        return kind == "checkpoint" and len(wanted) == 8 and compute and metadata.autov1(entry.path) == wanted


def _by_name(root: Path, kind: str, name: str) -> Optional[ModelEntry]:
    """The library entry for a name as an image writes it: `dreamshaper_8`, `sd15/dreamshaper_8.safetensors`."""
    base = name.replace("\\", "/").strip("/")
    for candidate in dict.fromkeys([base, base.rsplit("/", 1)[-1]]):
        found = find_model(root, kind, candidate) if root.is_dir() else None
        if found is not None:
            return found
    return None


def _bare(library_name: str) -> str:
    """A library name without its model extension (`styles/film.safetensors` → `styles/film`): how tags name it."""
    return without_extension(library_name)


def _clean_hash(value) -> Optional[str]:
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    text = text[2:] if text.startswith("0x") else text
    return text if re.fullmatch(r"[0-9a-f]{8,64}", text) else None
