"""CivitAI's answers to a download, read as one clear error each (reference civitai.md "Downloading",
civitai-api.md §7): login redirects and 401s, early access (403 with a deadline), disabled downloads, archived
versions (410), a download link whose filters match no file (404), the hourly download limit (429) and CivitAI's
own bad moments (5xx, Cloudflare's 524). Split from `sources.civitai`, which resolves links to files.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from ..civitai.client import BAD_TOKEN, NEEDS_TOKEN
from ..errors import AuthError, DownloadError, NotFoundError
from ..tokens import Token, redact_url

BUSY_ATTEMPTS = 4  # CivitAI 5xx/524 on a download: a few tries (a 524 alone takes ~100 s at Cloudflare)


def _json(body: bytes) -> dict:
    try:
        data = json.loads(body.decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _deadline(data: Mapping[str, Any]) -> Optional[str]:
    """The early-access end date from a 403 body, as YYYY-MM-DD HH:MM UTC."""
    raw = data.get("deadline") or data.get("earlyAccessEndsAt") or (data.get("data") or {}).get("deadline")
    if not raw:
        m = re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", json.dumps(data))
        raw = m.group(0) if m else None
    if not raw:
        return None
    m = re.match(r"(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}))?", str(raw))
    return f"{m.group(1)} {m.group(2)} UTC" if m and m.group(2) else (m.group(1) if m else str(raw))


def make_explain(label: str, token: Optional[Token], early_access_ends: Optional[str] = None):
    """An `explain` hook for the engine: CivitAI's error responses → one clear error."""
    auth_error = AuthError(BAD_TOKEN.format(origin=token.origin) if token else NEEDS_TOKEN)

    def explain(status: int, headers: Mapping[str, str], body: bytes, final_url: str) -> Optional[Exception]:
        lower = {k.lower(): v for k, v in dict(headers or {}).items()}
        location = lower.get("location", "")
        if 300 <= status < 400:
            return auth_error if _is_login(location) else None
        if _is_login(final_url):
            return auth_error
        data = _json(body or b"")
        said = str(data.get("message") or data.get("error") or "").strip()[:200]
        if status == 429 or status >= 500:
            return _busy(status, lower, said)
        if status == 401 and "disabled" in said.lower():
            return AuthError(f"the creator of CivitAI {label} has disabled downloads (CivitAI: \"{said}\"); "
                             "a token does not change that: pick another model")
        if status == 410:
            return NotFoundError(f"CivitAI {label} is archived (410): its files are no longer offered; pick another "
                                 "version on its model page")
        if status == 401:
            return auth_error
        if status == 403:
            text = json.dumps(data).lower()
            if "early" in text or "deadline" in data or early_access_ends:
                until = _deadline(data) or early_access_ends
                when = f" until {until}" if until else ""
                return AuthError(f"CivitAI {label} is in Early Access{when}: only supporters can download it "
                                 "now; wait until then, buy access on its page (and use your API token), or pick "
                                 "an earlier version")
            return auth_error if not token else AuthError(f"CivitAI refused {label} for this token (403): "
                                                          "check that your account may download it")
        if status == 404:
            # The version's details were just read, so the version exists: a 404 here is about this download
            # link (CivitAI cannot match its file filters), never proof that the model was removed.
            return NotFoundError(f"CivitAI found {label} but its download link {redact_url(final_url)} answered "
                                 "404 (no file matches it); copy the file's link from the model page, or pick "
                                 "another file of this version")
        return None

    return explain


def _busy(status: int, headers: Mapping[str, str], said: str) -> Optional[Exception]:
    """CivitAI busy or down: its 429 without Retry-After is its per-hour download counter (reference civitai-api.md
    §7), final at once; a 5xx/524 is retried a few times, saying whose side it is."""
    from ..http import Retryable, parse_retry_after

    wait = parse_retry_after(headers.get("retry-after"))
    if status == 429 and wait is None:
        words = f" (CivitAI: \"{said}\")" if said else ""
        return DownloadError(f"CivitAI refuses more downloads for now (429){words}: its limit counts downloads per "
                             "hour; wait a while and run again (the partial file, if any, is kept)")
    if status == 429:  # a Retry-After: waited as asked, saying who asked
        return Retryable(f"CivitAI asks to slow down (429, retry after {wait:g} s)", wait=wait)
    return Retryable(f"CivitAI is having trouble on its side (HTTP {status}), not your connection; try again in a "
                     "few minutes", wait=wait, attempts=BUSY_ATTEMPTS)


def _is_login(url: str) -> bool:
    path = urlsplit(url or "").path.lower()
    return path.rstrip("/").endswith("/login") or "/login/" in path or path.startswith("/login")
