"""Find each resource an image used: in the library first, then on CivitAI (version id, hashes, name), on every
host; download what is missing through the one download path, with its progress events.

Order (issue 12): CivitAI's own `civitaiResources` version ids, then hashes (AutoV2, SHA256) asked on both hosts,
then the name. A resource that cannot be had (deleted, early access, a family colab_sd cannot run, a failed
download) is reported with its reason and the others are still done.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..errors import ColabSDError, DownloadCancelled, NotFoundError
from ..library import ModelEntry, list_models
from ..tokens import redact
from . import catalog
from .client import Client
from .meta import Wanted

log = logging.getLogger("colab_sd.civitai")

# CivitAI `baseModel` → colab_sd's family ids (probe/registry names); anything else is unknown.
_BASES = (("sd 1", "sd1"), ("sd1", "sd1"), ("sd 2", "sd2"), ("sdxl", "sdxl"), ("pony", "sdxl"),
          ("illustrious", "sdxl"), ("noobai", "sdxl"), ("flux.1", "flux"), ("flux.2", "flux2"), ("sd 3", "sd3"),
          ("chroma", "chroma"), ("qwen", "qwen-image"), ("z-image", "zimage"), ("zimage", "zimage"),
          ("hunyuan", "hunyuan"),
          ("wan", "wan"), ("ltxv", "ltxv"), ("cogvideo", "cogvideo"), ("aura", "auraflow"), ("pixart", "pixart"),
          ("kolors", "kolors"), ("lumina", "lumina"), ("hidream", "hidream"))


def family_of(base_model: Optional[str]) -> Optional[str]:
    """colab_sd's family id for a CivitAI base model name ("SDXL 1.0" → "sdxl"), or None when unknown."""
    text = str(base_model or "").strip().lower()
    for prefix, family in _BASES:
        if text.startswith(prefix):
            return family
    return None


def runnable_families() -> tuple:
    """Families the generation stack runs (its registry when there is one, else its bundled configs)."""
    try:
        from ..generation.families import supported_ids

        return tuple(supported_ids())
    except ImportError:
        from ..generation.configs import FAMILIES

        return tuple(FAMILIES)


@dataclass
class Resource:
    """One resource's outcome: `status` is found (already in the library), downloaded, or missing (with `why`)."""

    role: str
    label: str
    weight: Optional[float] = None
    status: str = "missing"
    why: Optional[str] = None
    path: Optional[Path] = None
    name: Optional[str] = None  # the library name the request uses (relative to the kind folder)
    version_id: Optional[int] = None
    model_id: Optional[int] = None
    base_model: Optional[str] = None
    url: Optional[str] = None  # the CivitAI page it came from
    wanted_name: Optional[str] = None  # the name the image used for it (a prompt word for an embedding)

    def to_dict(self) -> dict:
        return {"role": self.role, "label": self.label, "weight": self.weight, "status": self.status,
                "why": self.why, "path": str(self.path) if self.path else None, "name": self.name,
                "version_id": self.version_id, "model_id": self.model_id, "base_model": self.base_model,
                "url": self.url}

    def line(self) -> str:
        """One line for a person: `✓ lora Paper Lantern (found: lora/paper.safetensors)`."""
        mark = {"found": "✓", "downloaded": "↓", "missing": "✗"}.get(self.status, "?")
        where = f": {self.path.parent.name}/{self.path.name}" if self.path else ""
        why = f" — {self.why}" if self.why else ""
        weight = f" ×{self.weight:g}" if self.weight is not None and self.role == "lora" else ""
        return f"{mark} {self.role} {self.label}{weight} ({self.status}{where}){why}"


class Library:
    """The models on disk, indexed for look-ups by CivitAI version id, hash and name."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.refresh()

    def refresh(self) -> None:
        self.entries: list[ModelEntry] = list_models(self.root) if self.root.is_dir() else []

    def by_version(self, version_id: int, role: str) -> Optional[ModelEntry]:
        return next((e for e in self.entries if _kind_ok(e, role)
                     and (e.meta.get("civitai") or {}).get("version_id") == version_id), None)

    def by_hash(self, digest: str, role: str) -> Optional[ModelEntry]:
        digest = digest.lower()
        for e in self.entries:
            sha = str(e.meta.get("sha256") or "").lower()
            autov2 = str((e.meta.get("civitai") or {}).get("autov2") or "").lower()
            if _kind_ok(e, role) and sha and (sha == digest or (len(digest) == 10 and sha[:10] == digest)
                                             or autov2 == digest):
                return e
        return None

    def by_name(self, name: str, role: str) -> Optional[ModelEntry]:
        want = _norm(name)
        return next((e for e in self.entries if _kind_ok(e, role) and want in (_norm(e.stem), _norm(e.name))), None)


def _kind_ok(entry: ModelEntry, role: str) -> bool:
    return entry.kind == role


def _norm(text: str) -> str:
    base = str(text).replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", base.lower())


Download = Callable[..., Path]


@dataclass
class Finder:
    """Resolves `Wanted` resources; `download(url, kind=…)` is `api.download` with the caller's listener."""

    client: Client
    library: Library
    download: Optional[Download]  # None: report what is missing, fetch nothing
    link: Optional[str] = None  # the image page (its host is asked first)
    runnable: tuple = field(default_factory=runnable_families)

    def find(self, wanted: Wanted) -> Resource:
        out = Resource(wanted.role, wanted.label(), wanted.weight, wanted_name=wanted.name)
        local = self._local(wanted)
        if local is not None:
            return self._found(out, local)
        try:
            version, base = self._remote(wanted)
        except NotFoundError as err:
            out.why = str(err)
            return out
        except ColabSDError as err:
            out.why = redact(err)
            return out
        return self._fetch(out, wanted, version, base)

    def _local(self, wanted: Wanted) -> Optional[ModelEntry]:
        if wanted.version_id:
            hit = self.library.by_version(wanted.version_id, wanted.role)
            if hit is not None:
                return hit
        for digest in wanted.hashes:
            hit = self.library.by_hash(digest, wanted.role)
            if hit is not None:
                return hit
        if wanted.name and not wanted.version_id and not wanted.hashes:
            return self.library.by_name(wanted.name, wanted.role)
        return None

    def _found(self, out: Resource, entry: ModelEntry) -> Resource:
        civ = entry.meta.get("civitai") or {}
        out.status, out.path, out.name = "found", entry.path, entry.name
        out.version_id, out.model_id = civ.get("version_id"), civ.get("model_id")
        out.base_model = entry.meta.get("base_model")
        if civ.get("model_name"):
            out.label = str(civ["model_name"])
        return out

    def _remote(self, wanted: Wanted) -> tuple[Mapping[str, Any], str]:
        """The version on CivitAI: by version id, then each hash (every host), then by name."""
        if wanted.version_id:
            try:
                return self.client.version(wanted.version_id, link=self.link)
            except NotFoundError:
                if not wanted.hashes and not wanted.name:
                    raise NotFoundError(f"CivitAI has no version {wanted.version_id} on any host "
                                        "(deleted, or never published)") from None
        for digest in wanted.hashes:
            hit = self.client.by_hash(digest, link=self.link)
            if hit is not None:
                return hit
        if wanted.name:
            hit = self._by_name(wanted)
            if hit is not None:
                return hit
        what = ", ".join(filter(None, [f"version {wanted.version_id}" if wanted.version_id else None,
                                       f"hash {'/'.join(wanted.hashes)}" if wanted.hashes else None,
                                       f"name {wanted.name!r}" if wanted.name else None]))
        raise NotFoundError(f"not on CivitAI ({what}) and not in the library")

    def _by_name(self, wanted: Wanted) -> Optional[tuple[Mapping[str, Any], str]]:
        """A search by name, taken only when a model's or file's name is that name (no guessing)."""
        types = {"checkpoint": ["checkpoint"], "lora": ["lora", "locon", "dora"], "embedding": ["embedding"],
                 "vae": ["vae"]}[wanted.role]
        page = catalog.search(self.client, catalog.SearchQuery.build(wanted.name, types=types, level="XXX",
                                                                     limit=10), link=self.link)
        want = _norm(wanted.name)
        for card in page.cards:
            for version in card.raw.get("modelVersions") or []:
                names = [_norm(card.name)] + [_norm(f.get("name") or "") for f in version.get("files") or []]
                if want in names:
                    full = {**version, "modelId": card.id,
                            "model": {"name": card.name, "type": card.type, "nsfw": card.nsfw}}
                    return full, page.base
        return None

    def _same_bytes(self, version: Mapping[str, Any], role: str) -> Optional[ModelEntry]:
        """A library file with the SHA256 CivitAI lists for the file a download would fetch (copied or downloaded
        from elsewhere before): no second copy."""
        from ..sources import civitai as source

        try:
            digest = source.listed_sha256(source.pick_file(version))
        except ColabSDError:
            return None
        return self.library.by_hash(digest, role) if digest else None

    def _fetch(self, out: Resource, wanted: Wanted, version: Mapping[str, Any], base: str) -> Resource:
        model = version.get("model") or {}
        out.version_id, out.model_id = version.get("id"), version.get("modelId")
        out.base_model = version.get("baseModel")
        out.label = f"{model.get('name') or out.label} {version.get('name') or ''}".strip()
        out.url = f"{base}/models/{out.model_id}?modelVersionId={out.version_id}"
        local = self.library.by_version(int(out.version_id or 0), wanted.role) or self._same_bytes(version,
                                                                                                   wanted.role)
        if local is not None:
            return self._found(out, local)
        family = family_of(out.base_model)
        if wanted.role in ("checkpoint", "lora") and family not in self.runnable:
            out.why = (f"made for {out.base_model or 'an unknown base model'}, a family colab_sd cannot run yet "
                       f"(it runs {', '.join(self.runnable)})")
            return out
        ea = catalog.early_access(version)
        if ea:
            out.why = f"in Early Access {ea}: only supporters can download it now"
            return out
        if not catalog.can_download(version):
            out.why = "CivitAI offers no downloadable file for it (archived, or downloads disabled by its creator)"
            return out
        if self.download is None:
            out.why = "not downloaded (downloads were turned off)"
            return out
        try:
            path = self.download(out.url, kind=wanted.role)
        except (DownloadCancelled, KeyboardInterrupt):
            raise
        except ColabSDError as err:
            out.why = redact(err)
            return out
        self.library.refresh()
        entry = next((e for e in self.library.entries if e.path == Path(path)), None)
        out.status, out.path = "downloaded", Path(path)
        out.name = entry.name if entry else Path(path).name
        return out
