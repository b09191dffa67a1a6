"""Recreate an image: its page, URL or file in; every resource it used found or downloaded; the request out.

    result = colab_sd.recreate("https://civitai.com/images/31001")     # or civitai.red/…, an image URL, a file
    result.request      # GenerationRequest fields: prompt, model, loras [(name, weight)], sampler, seed, size…
    result.resources    # one Resource per checkpoint / LoRA / embedding / VAE: found, downloaded or missing (why)
    result.notes        # what could not be carried over (no metadata, hires fix, an unknown sampler…)
    colab_sd.recreate(source, generate=True).images

Torch-free unless `generate=True`. (The module is not called `recreate` because the package's `colab_sd.recreate`
function would be shadowed by it on first import.) Each thing that cannot be done (missing metadata, a deleted model, an early
access LoRA, a family colab_sd cannot run) is one line in `notes` / a `missing` resource; the rest is still done.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .events import Info
from .library import models_root
from .tokens import TokenStore

__all__ = ["recreate", "RecreateResult"]


@dataclass
class RecreateResult:
    """What `recreate` found; `request` is ready for `colab_sd.generate(**result.request)` when `model` is set."""

    source: str
    kind: str  # "page", "url", "file"
    request: dict
    resources: list
    notes: list = field(default_factory=list)
    image_id: Optional[int] = None
    result: Any = None  # the GenerationResult when generated
    paths: list = field(default_factory=list)

    @property
    def missing(self) -> list:
        return [r for r in self.resources if r.status == "missing"]

    @property
    def images(self) -> list:
        return list(getattr(self.result, "images", []) or [])

    def to_dict(self) -> dict:
        return {"source": self.source, "kind": self.kind, "image_id": self.image_id, "request": self.request,
                "resources": [r.to_dict() for r in self.resources], "notes": list(self.notes),
                "images": [str(p) for p in self.paths]}

    def lines(self) -> list[str]:
        """A short report: one line per resource, then the notes."""
        return [r.line() for r in self.resources] + [f"note: {n}" for n in self.notes]


def recreate(source, models_dir=None, *, tokens: Optional[TokenStore] = None, generate: bool = False,
             download: bool = True, outputs_dir=None, on_event: Optional[Callable] = None,
             cancel: Optional[threading.Event] = None, client=None, **overrides) -> RecreateResult:
    """Read `source`'s generation data, find or download every resource, and build the request.

    `source`: `civitai.com/images/ID` / `civitai.red/images/ID` (or the `$CIVITAI_ENDPOINT` host), an image URL,
    or a local PNG / JPEG / WebP path. `download=False` only reports what is missing. `generate=True` also runs
    the request (needs the generation extra). `overrides` replace request fields (e.g. steps=2, width=64).
    Raises a one-line ColabSDError only when the source itself cannot be read (not an image, not found).
    """
    from . import api
    from .civitai import images, meta
    from .civitai.client import Client
    from .civitai.resources import Finder, Library

    tokens = tokens if tokens is not None else TokenStore()
    client = client or Client(tokens)
    root = models_root(models_dir)
    emit = on_event or (lambda event: None)
    loaded = images.load(str(source), client)
    emit(Info(f"reading {loaded.label}", job="recreate"))
    generation = meta.from_parameters(loaded.params) if loaded.params else meta.Generation({}, [], [])
    notes = list(generation.notes) if loaded.params else [loaded.why or "the image carries no generation data"]

    def fetch(url: str, kind: str) -> Path:
        return api.download(url, kind=kind, models_dir=root, tokens=tokens, on_event=on_event, cancel=cancel)

    finder = Finder(client, Library(root), fetch if download else None, link=loaded.link)
    resources = _dedupe([finder.find(w) for w in generation.resources])
    request = _request(generation.fields, resources, notes)
    request.update(overrides)
    result = RecreateResult(str(loaded.label), loaded.kind, request, resources, notes, loaded.image_id)
    if generate:
        _generate(result, root, outputs_dir, on_event, cancel, tokens)
    return result


def _dedupe(resources: list) -> list:
    """One resource per file: the same LoRA named by its version id and by its `<lora:…>` tag is one."""
    out: list = []
    for r in resources:
        twin = next((o for o in out if o.role == r.role and o.path is not None and o.path == r.path), None)
        if twin is None:
            out.append(r)
        elif r.weight is not None and twin.weight in (None, 1.0):
            twin.weight = r.weight
    return out


def _request(fields: dict, resources: list, notes: list) -> dict:
    request = dict(fields)
    have = [r for r in resources if r.status in ("found", "downloaded")]
    checkpoint = next((r for r in have if r.role == "checkpoint"), None)
    request["model"] = checkpoint.name if checkpoint else None
    if checkpoint is None:
        notes.append("no checkpoint could be had: pick one in the Generate panel (or pass model=)")
    vae = next((r for r in have if r.role == "vae"), None)
    if vae is not None:
        request["vae"] = vae.name
    request["loras"] = [(Path(r.name).stem if r.name else r.label, r.weight if r.weight is not None else 1.0)
                        for r in have if r.role == "lora"]
    embeddings = [r for r in have if r.role == "embedding"]
    if embeddings:
        request["embeddings"] = [Path(r.name).stem for r in embeddings if r.name]
        for r in embeddings:  # the prompt names an embedding by the word it was saved under elsewhere
            old, new = r.wanted_name, Path(r.name).stem if r.name else None
            for key in ("prompt", "negative_prompt"):
                if new and old and old != new and request.get(key):
                    request[key] = re.sub(rf"\b{re.escape(old)}\b", new, request[key])
    return request


def _generate(result: RecreateResult, root: Path, outputs_dir, on_event, cancel, tokens) -> None:
    if not result.request.get("model"):
        result.notes.append("not generated: no checkpoint")
        return
    from .generation import generate

    fields = {k: v for k, v in result.request.items() if v is not None}
    done = generate(None, models_dir=str(root), outputs_dir=str(outputs_dir) if outputs_dir else None,
                    on_event=on_event, cancel=cancel, tokens=tokens, **fields)
    result.result = done
    result.paths = [Path(p) for p in getattr(done, "paths", []) or []]
