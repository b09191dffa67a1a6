"""What a source hands to the byte mover: one remote file, fully described before any byte moves."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

from .tokens import redact_url


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    `filename` is the name the source knows (an API's file name); the server's Content-Disposition
    wins over it, and a name the user gives wins over both. `headers` (auth) are sent only to the
    host of `url`, never to a host a redirect leads to. `fetcher`, when set, moves the bytes itself
    (the Hub client, gdown) instead of the HTTP engine; it is called as
    `fetcher(remote, dest_dir, name=, on_event=, cancel=, options=) -> FetchResult`.
    """

    url: str
    filename: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    kind: Optional[str] = None
    subdir: Optional[str] = None  # relative folder under the kind folder (a diffusers repo, a Drive folder)
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)  # goes into the sidecar
    fetcher: Optional[Callable[..., "FetchResult"]] = field(default=None, repr=False, compare=False)
    # Turns an error response from the origin host into the service's own one-line error, or None for the
    # engine's generic one: explain(status_code, response_headers, body_excerpt_bytes, final_url) -> Exception | None.
    # It is also asked about redirects to a login page (status 302, body b"").
    explain: Optional[Callable[[int, Mapping[str, str], bytes, str], Optional[Exception]]] = field(
        default=None, repr=False, compare=False)

    @property
    def shown_url(self) -> str:
        """The URL as it may be shown: credentials redacted."""
        return redact_url(self.url)

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    def __repr__(self) -> str:
        return (f"RemoteFile(url={self.shown_url!r}, filename={self.filename!r}, size={self.size!r}, "
                f"sha256={self.sha256!r}, kind={self.kind!r})")


@dataclass(frozen=True)
class FetchResult:
    """Where a fetched file landed."""

    path: Any  # pathlib.Path
    bytes: int
    sha256: Optional[str]
    skipped: bool = False  # a matching file was already there
