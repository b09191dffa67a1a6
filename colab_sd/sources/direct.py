"""Direct links: any other http(s) URL goes to the transfer engine as it is.

The file's kind is unknown here: the library reads the safetensors header after the download.
"""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from ..errors import InputError
from ..remote import RemoteFile
from ..tokens import TokenStore, redact_url

NAME = "direct"


def matches(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() in ("http", "https")


def resolve(url: str, tokens: Optional[TokenStore] = None, *, notes: Optional[list] = None) -> RemoteFile:
    url = url.strip()
    if not urlsplit(url).hostname:
        raise InputError(f"{redact_url(url)!r} has no host name; paste the whole link (https://…)")
    return RemoteFile(url=url, meta={"source_name": NAME})
