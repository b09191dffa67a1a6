"""Sources: a pasted URL → a `Plan` of remote files, before any byte moves.

One module per host; `SOURCES` is the dispatch table, tried in order, the first whose `matches`
says yes resolves the URL (direct links last). Adding a host is adding a module and a row here.
Each module exposes `NAME`, `matches(url) -> bool` and `resolve(url, tokens, *, notes) -> RemoteFile
| list[RemoteFile]`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from ..errors import InputError
from ..remote import RemoteFile
from ..tokens import TokenStore, redact_url
from . import civitai, direct, gdrive, huggingface

SOURCES = (civitai, huggingface, gdrive, direct)
_BY_NAME = {s.NAME: s for s in SOURCES}

# Hosts a user may paste without the scheme (copied from an address bar that hides it).
_BARE_HOSTS = re.compile(r"^(?:www\.)?(?:civitai\.(?:com|red|green)|huggingface\.co|hf\.co|drive\.google\.com|"
                         r"drive\.usercontent\.google\.com|docs\.google\.com)/", re.IGNORECASE)


@dataclass(frozen=True)
class Plan:
    """What a URL resolved to.

    `files` are fetched in order; `folder` is set for a multi-file model (a diffusers repo, a Drive
    folder) that lands as `<kind>/<folder>/` and is returned as that folder; `notes` are messages
    for the user (an unscanned file, a pickle).
    """

    source: str
    url: str
    files: tuple
    folder: Optional[str] = None
    notes: tuple = ()

    @property
    def is_folder(self) -> bool:
        """True when the download is a folder of files (returned as the folder's path)."""
        return bool(self.folder) or len(self.files) > 1 or any(f.meta.get("is_folder") for f in self.files)

    @property
    def kind(self) -> Optional[str]:
        kinds = {f.kind for f in self.files}
        return kinds.pop() if len(kinds) == 1 else None

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)


def normalize_url(url: str) -> str:
    """The URL as pasted, trimmed, with `https://` added to a known host typed without it."""
    if isinstance(url, os.PathLike) or (url is not None and not isinstance(url, str)):
        raise InputError(f"give the link as text (a str), not {type(url).__name__}: a CivitAI, Hugging Face, "
                         "Google Drive or direct download link")
    text = (url or "").strip().strip("<>\"'")
    if not text:
        raise InputError("no URL given: paste a CivitAI, Hugging Face, Google Drive or direct download link")
    if _BARE_HOSTS.match(text):
        text = "https://" + text
    try:  # a malformed link (an unclosed [IPv6], a bad port) is the user's to fix, not a failed download
        parts = urlsplit(text)
        parts.port
    except ValueError as err:
        raise InputError(f"{redact_url(text)!r} is not a valid link ({err}); paste the whole link again") from None
    return text


def pick(url: str, source: Optional[str] = None):
    """The source module for `url` (or the one named by `source`)."""
    if source:
        module = _BY_NAME.get(source.strip().lower())
        if module is None:
            raise InputError(f"unknown source {source!r}: use one of {', '.join(_BY_NAME)}")
        return module
    for module in SOURCES:
        if module.matches(url):
            return module
    raise InputError(f"cannot download {redact_url(url)!r}: paste an http(s) link, a Hugging Face repo "
                     "(owner/repo or owner/repo/file.safetensors), an AIR urn or civitai:VERSION_ID")


def resolve(url: str, tokens: Optional[TokenStore] = None, *, source: Optional[str] = None) -> Plan:
    """Turn a pasted URL into a Plan; raises a one-line ColabSDError when it cannot."""
    url = normalize_url(url)
    if source and source.strip().lower() == civitai.NAME and url.isdigit():
        url = f"civitai:{url}"  # a bare version id with --source civitai
    module = pick(url, source)
    notes: list[str] = []
    result = module.resolve(url, tokens, notes=notes)
    files = tuple(result) if isinstance(result, (list, tuple)) else (result,)
    folder = next((f.meta.get("folder") for f in files if f.meta.get("folder")), None)
    return Plan(source=module.NAME, url=url, files=files, folder=folder, notes=tuple(notes))


__all__ = ["Plan", "SOURCES", "resolve", "pick", "normalize_url", "RemoteFile"]
