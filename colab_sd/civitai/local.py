"""The library's CivitAI side: preview images beside models, "what is this file?", "is there a newer version?".

Preview: `<model file>.preview.<ext>` beside the model and its sidecar, the version's first image at a safe level
(PG / PG-13), at the CDN's 450 px width; fetched without credentials. Identify: a file's SHA256 asked on every
host (`/model-versions/by-hash/…`). Updates (reference civitai-api.md §8, after Lora-Manager's
model_update_service): newer = a published version of the same model with a larger id than the local one,
downloadable now (no paid/early access, `usageControl` Download), the same base model preferred.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..library import ModelEntry, read_sidecar, update_sidecar
from . import catalog, levels
from .client import Client, fetch_image

log = logging.getLogger("colab_sd.civitai")

PREVIEW_LEVEL = levels.PG13  # what is saved to disk and shown in the Library without asking
_EXT = {"image/jpeg": ".jpeg", "image/webp": ".webp", "image/png": ".png"}


def preview_path(model_path) -> Optional[Path]:
    """The preview saved beside a model, or None."""
    model_path = Path(model_path)
    for ext in (".jpeg", ".webp", ".png", ".jpg"):
        candidate = model_path.with_name(model_path.name + ".preview" + ext)
        if candidate.is_file():
            return candidate
    return None


def save_preview(model_path, version: Mapping[str, Any], max_level: int = PREVIEW_LEVEL) -> Optional[Path]:
    """Save the version's first image allowed at `max_level` beside the model; None when it has none.
    Raises DownloadError when the CDN fails (callers treat a preview as optional)."""
    image = levels.first_shown(version.get("images") or [], max_level)
    if image is None:
        return None
    data, ctype = fetch_image(levels.sized(image["url"], levels.PREVIEW_WIDTH))
    model_path = Path(model_path)
    target = model_path.with_name(model_path.name + ".preview" + _EXT.get(ctype.split(";")[0].strip(), ".jpeg"))
    old = preview_path(model_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    if old is not None and old != target:
        old.unlink(missing_ok=True)
    return target


def fetch_with_preview(version: Mapping[str, Any]):
    """A RemoteFile fetcher for a CivitAI file: the engine's fetch, then the version's preview saved beside the
    file (best effort, no credentials; an existing preview is kept)."""

    def fetcher(remote, dest, *, name=None, on_event=None, cancel=None, options=None, job=None):
        import dataclasses

        from ..events import Info
        from ..transfer import fetch

        result = fetch(dataclasses.replace(remote, fetcher=None), dest, name=name, on_event=on_event, cancel=cancel,
                       options=options, job=job)
        if preview_path(result.path) is None:
            try:
                saved = save_preview(result.path, version)
            except Exception as err:  # a preview is a nicety: the model is what was asked for
                log.info("no preview for %s: %s", result.path, err)
            else:
                if saved is not None and on_event is not None:
                    on_event(Info(f"preview saved: {saved.name}", job=job))
        return result

    return fetcher


def sidecar_fields(version: Mapping[str, Any], digest: str) -> dict:
    """What `identify` records for a file CivitAI knows (the same fields a CivitAI download writes)."""
    from ..sources import civitai as source

    files = list(version.get("files") or [])
    f = next((g for g in files if source.listed_sha256(g) == digest.lower()), None) or (files[0] if files else {})
    model = version.get("model") or {}
    return source.sidecar_meta(version, f, source.kind_for(model.get("type"), f.get("type")))


@dataclass
class Identified:
    entry: ModelEntry
    found: Optional[dict]  # sidecar fields, None when no host knows the file
    preview: Optional[Path] = None


def identify(entries, client: Client, *, force: bool = False) -> list[Identified]:
    """Look up, by SHA256 on every CivitAI host, each model file whose sidecar has no CivitAI details; record
    what is found (base model, trigger words, ids) and a preview. Folders are skipped (no single hash)."""
    from ..hashing import file_sha256

    out = []
    for entry in entries:
        if not entry.path.is_file() or (entry.meta.get("civitai") and not force):
            continue
        digest = (entry.meta.get("sha256") or "").lower() or file_sha256(entry.path).hexdigest()
        hit = client.by_hash(digest)
        if hit is None:
            update_sidecar(entry.path, {"sha256": digest, "size": entry.size,
                                        "civitai_checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            out.append(Identified(entry, None))
            continue
        version, _ = hit
        found = sidecar_fields(version, digest)
        update_sidecar(entry.path, {"sha256": digest, "size": entry.size, "base_model": found.get("base_model"),
                                    "trigger_words": found.get("trigger_words"), "civitai": found.get("civitai")})
        out.append(Identified(entry, found, _try_preview(entry.path, version)))
    return out


def _try_preview(path: Path, version: Mapping[str, Any]) -> Optional[Path]:
    try:
        return save_preview(path, version)
    except Exception as err:  # a preview is a nicety: never fail the caller for it
        log.info("no preview for %s: %s", path.name, err)
        return None


@dataclass
class Update:
    entry: ModelEntry
    current: dict  # {"id", "name"} of the local version
    newer: Optional[dict]  # {"id", "name", "base_model", "url"} or None when up to date
    note: Optional[str] = None  # why it could not be checked


def newer_version(model: Mapping[str, Any], version_id: int, base_model: Optional[str]) -> Optional[Mapping]:
    """The newest downloadable version with an id above `version_id` (same base model first), or None."""
    candidates = [v for v in model.get("modelVersions") or []
                  if int(v.get("id") or 0) > version_id and (v.get("status") or "Published") == "Published"
                  and catalog.can_download(v)]
    same = [v for v in candidates if not base_model or v.get("baseModel") == base_model]
    pool = same or candidates
    return max(pool, key=lambda v: int(v["id"])) if pool else None


def updates(entries, client: Client) -> list[Update]:
    """Check each CivitAI model in the library for a newer version (one request per model, cached); the
    answer is written into the sidecar (`civitai.update`) for the Library's badge."""
    out = []
    for entry in entries:
        info = entry.meta.get("civitai") or {}
        if not info.get("model_id") or not info.get("version_id"):
            continue
        try:
            model, base = client.model(int(info["model_id"]))
        except Exception as err:  # NotFoundError (deleted), DownloadError: say so on this row only
            out.append(Update(entry, {"id": info["version_id"], "name": info.get("version_name")}, None,
                              str(err)))
            continue
        found = newer_version(model, int(info["version_id"]), entry.meta.get("base_model"))
        newer = None
        if found is not None:
            newer = {"id": found["id"], "name": found.get("name"), "base_model": found.get("baseModel"),
                     "url": f"{base}/models/{model.get('id')}?modelVersionId={found['id']}"}
        meta = read_sidecar(entry.path)
        civ = dict(meta.get("civitai") or {})
        civ["update"] = newer
        civ["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        update_sidecar(entry.path, {"civitai": civ})
        out.append(Update(entry, {"id": info["version_id"], "name": info.get("version_name")}, newer))
    return out
