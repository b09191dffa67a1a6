"""File names: from a response's Content-Disposition, the final URL or its query, made safe to write.

Pure functions, no I/O. A name from a server can never leave the target folder: separators,
`..`, control characters and reserved names are neutralised and the length is bounded.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Mapping, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import InputError
from .tokens import redact

MAX_NAME_BYTES = 200  # well under the usual 255-byte limit, leaving room for ".part" / ".json"
_TEMP_SUFFIXES = (".part", ".part.json", ".part.lock")
_QUERY_NAME_KEYS = ("filename", "file", "name", "fn")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def _repair_mojibake(name: str) -> str:
    """Undo UTF-8 bytes that were decoded as latin-1 (a common server bug: "cafÃ©" → "café")."""
    try:
        fixed = name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name
    return fixed


def _disposition_params(value: str) -> dict[str, str]:
    """The parameters of a Content-Disposition value (RFC 6266): tokens, or quoted-strings whose
    backslash escapes are undone (`"f\\oo"` is `foo`); names in lower case; the first of each wins."""
    params: dict[str, str] = {}
    i, n = 0, len(value)
    while i < n:
        semi = value.find(";", i)
        if semi < 0:
            break
        i = semi + 1
        m = re.compile(r"\s*([^\s=;]+)\s*=\s*").match(value, i)
        if not m:
            continue
        key, i = m.group(1).lower(), m.end()
        if i < n and value[i] == '"':
            out, i = [], i + 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            i += 1  # the closing quote
            val = "".join(out)
        else:
            end = value.find(";", i)
            end = n if end < 0 else end
            val, i = value[i:end].strip(), end
        params.setdefault(key, val)
    return params


def from_content_disposition(value: Optional[str]) -> Optional[str]:
    """The file name a Content-Disposition header gives (`filename*=` wins over `filename=`), unsanitised."""
    if not value:
        return None
    # The parser starts after the disposition type; a value without one (`filename=x.bin`) starts at once.
    params = _disposition_params(";" + value if "=" in value.split(";", 1)[0] else value)
    ext = params.get("filename*")
    if ext:  # RFC 5987 extended value: UTF-8''na%C3%AFve.safetensors
        charset, _, rest = ext.strip('"').partition("'")
        _, _, encoded = rest.partition("'")
        if encoded or rest:
            try:
                return unquote(encoded or rest, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                return unquote(encoded or rest, encoding="latin-1")
    name = params.get("filename")
    if not name:
        return None
    name = name.strip().strip("'")
    if "%" in name and re.search(r"%[0-9A-Fa-f]{2}", name):
        name = unquote(name)
    return _repair_mojibake(name)


def from_url_path(url: str) -> Optional[str]:
    """The last path segment, percent-decoded; never the query string."""
    path = urlsplit(url).path
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return unquote(last) or None


def from_url_query(url: str) -> Optional[str]:
    """A name carried in the query: `response-content-disposition` (signed storage URLs) or `filename=`."""
    params = dict((k.lower(), v) for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True))
    disposition = params.get("response-content-disposition")
    if disposition:
        name = from_content_disposition(disposition)
        if name:
            return name
    for key in _QUERY_NAME_KEYS:
        if params.get(key):
            return params[key]
    return None


def sanitize(name: str) -> str:
    """A safe single file name: no folders, no `..`, no control characters, bounded length."""
    name = unicodedata.normalize("NFC", str(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # a path in a header keeps only its last part
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # control / format characters
    name = re.sub(r'[<>:"|?*]', "_", name)
    name = name.strip().strip(".").strip()
    if not name or name in (".", ".."):
        return ""
    # A leading dash reads as an option to every shell command the user may run on the file.
    name = re.sub(r"^-+", lambda m: "_" * len(m.group(0)), name)
    # Windows (a Drive synced to a PC) reserves the device names whatever follows the first dot, and
    # ignores spaces before it: `CON.tar.gz` and `con .safetensors` are reserved as much as `CON.safetensors`.
    if name.split(".", 1)[0].rstrip(" ").lower() in _WINDOWS_RESERVED:
        name = "_" + name
    if name.lower().endswith(_TEMP_SUFFIXES):  # our own temp names are never a final name
        name += "_"
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    room = MAX_NAME_BYTES - len(ext.encode("utf-8")) - (1 if ext else 0)
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip()
    return f"{stem}.{ext}" if ext else stem


def user_name(name: str) -> str:
    """A name the user typed, sanitised; refuse one that sanitises to nothing or tries to leave the folder."""
    cleaned = sanitize(name)
    if not cleaned or cleaned != name.strip():
        if not cleaned or "/" in name or "\\" in name or ".." in name:
            raise InputError(f"cannot save as {name!r}: give a plain file name without folders, e.g. model.safetensors")
    return cleaned


def choose(response_headers: Mapping[str, str], final_url: str, *, fallback: Optional[str] = None,
           original_url: Optional[str] = None) -> str:
    """The best name for a response: Content-Disposition > a source's name > final URL path > query > original URL."""
    candidates = [
        from_content_disposition(response_headers.get("Content-Disposition")),
        fallback,
        _meaningful(from_url_path(final_url)),
        from_url_query(final_url),
        _meaningful(from_url_path(original_url)) if original_url else None,
        from_url_path(final_url),
    ]
    for candidate in candidates:
        if candidate:
            safe = sanitize(redact(candidate))  # a token a server echoes back never becomes a file name
            if safe:
                return safe
    host = urlsplit(final_url).hostname or "download"
    return sanitize(f"{host}.bin") or "download.bin"


def guess_from_url(url: str) -> Optional[str]:
    """A name the URL itself suggests before any request (its path's file name, or a query `filename=`)."""
    return _meaningful(from_url_path(url)) or from_url_query(url)


def _meaningful(segment: Optional[str]) -> Optional[str]:
    """A path segment that looks like a file name (opaque ids such as "128713" or "download" are not)."""
    if not segment:
        return None
    if "." not in segment.strip("."):
        return None
    return segment
