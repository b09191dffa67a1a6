"""Where tokens come from, which host gets which, and scrubbing them out of anything shown.

Lookup order, per service: an explicit value → environment variables → the host's secret of the
same name (a Colab or Kaggle secret; `hosts.secret`). A token is wrapped in `Secret`, whose repr and str
never show the value, and every value seen is registered so that `redact()` can scrub it from
messages, URLs and logs.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import hosts

# Environment / Colab-secret names per service, most specific first.
ENV_NAMES = {
    "civitai": ("CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY"),
    "huggingface": ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
}
SERVICES = tuple(ENV_NAMES)

# Query parameters whose values are credentials, by rule rather than by list: signed storage URLs
# (S3 X-Amz-Signature / X-Amz-Security-Token / X-Amz-Credential, GCS X-Goog-Signature, Azure `sig`,
# CloudFront `Signature` / `Key-Pair-Id`), API keys and tokens of any spelling, passwords.
_SECRET_NAME = re.compile(r"(?i)(token|signature|secret|passw|credential|api[-_]?key|access[-_]?key|auth|"
                          r"^sig$|[-_]sig$|^key$|[-_.]key$|key[-_]pair[-_]id|^pwd$|^code$)")


def is_secret_param(name: str) -> bool:
    """True for a query parameter name whose value is a credential (`token`, `X-Amz-Signature`, `sig`, `api_key`…)."""
    return bool(_SECRET_NAME.search(name or ""))


_REDACTED = "***"

_known_secrets: set[str] = set()
_known_lock = threading.Lock()


class Secret:
    """A token value that never shows itself in repr, str, f-strings or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value.strip()
        remember_secret(self._value)

    def reveal(self) -> str:
        """The raw value, for an HTTP header only."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):  # pickling would write the value somewhere we do not control
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Token:
    """A token and where it came from ("argument", "environment CIVITAI_TOKEN", "Colab secret HF_TOKEN")."""

    secret: Secret
    origin: str

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret.reveal()}"}


def remember_secret(value: Optional[str]) -> None:
    """Register a value to be scrubbed by `redact()` (short values would scrub ordinary words)."""
    if value and len(value) >= 6:
        with _known_lock:
            _known_secrets.add(value)


def in_colab() -> bool:
    """True inside a Colab runtime; not on Kaggle, whose image is built from Colab's (see `hosts`)."""
    return hosts.in_colab()


def _host_secret(name: str) -> tuple[Optional[str], str]:
    """(value or None, origin) from the host's secrets store (Colab, Kaggle); `hosts.secret_problem` says why not."""
    host = "colab" if in_colab() else hosts.host_name()
    if host not in ("colab", "kaggle"):
        return None, ""
    return hosts.secret(name, host), f"{host.capitalize()} secret {name}"


def lookup(service: str, explicit: Optional[str] = None, *, use_colab: bool = True) -> Optional[Token]:
    """Find the token for `service` ("civitai" or "huggingface"), or None when none is set."""
    if service not in ENV_NAMES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    if isinstance(explicit, Secret):
        explicit = explicit.reveal()
    if explicit and explicit.strip():
        return Token(Secret(explicit), "argument")
    for name in ENV_NAMES[service]:
        value = os.environ.get(name, "").strip()
        if value:
            return Token(Secret(value), f"environment {name}")
    if use_colab:
        for name in ENV_NAMES[service]:
            value, origin = _host_secret(name)
            if value:
                return Token(Secret(value), origin)
    return None


class TokenStore:
    """Tokens for every service, as the sources need them; explicit values win over the environment."""

    def __init__(self, civitai: Optional[str] = None, huggingface: Optional[str] = None, *, use_colab: bool = True):
        self._explicit = {"civitai": civitai, "huggingface": huggingface}
        self._use_colab = use_colab
        self._cache: dict[str, Optional[Token]] = {}

    def set(self, service: str, value: Optional[str]) -> None:
        """Set (or clear, with None) the explicit token of a service."""
        self._explicit[service] = value
        self._cache.pop(service, None)

    def get(self, service: str) -> Optional[Token]:
        if service not in self._cache:
            self._cache[service] = lookup(service, self._explicit.get(service), use_colab=self._use_colab)
        return self._cache[service]

    def __repr__(self) -> str:
        parts = ", ".join(f"{s}={'set' if self.get(s) else 'not set'}" for s in SERVICES)
        return f"TokenStore({parts})"


def redact_url(url: str) -> str:
    """The URL with credential query values and userinfo passwords replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url, urls=False)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        for k, v in pairs:
            if is_secret_param(k):
                remember_secret(v)  # so the same value is scrubbed wherever a server echoes it back
        if any(is_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, _REDACTED if is_secret_param(k) else v) for k, v in pairs], safe="*/:")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), urls=False)


_QUERY_PAIR = re.compile(r"([?&;]([\w.~%-]+)=)([^&#\s\"'<>]+)")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_URL = re.compile(r"https?://[^\s\"'<>]+")


def redact(text: object, *, urls: bool = True) -> str:
    """`text` as a string with every known token, `token=` value and Bearer credential replaced by ***."""
    out = str(text)
    with _known_lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for value in secrets:
        if value in out:
            out = out.replace(value, _REDACTED)
    out = _QUERY_PAIR.sub(lambda m: m.group(1) + _REDACTED if is_secret_param(m.group(2)) else m.group(0), out)
    out = _BEARER.sub(lambda m: m.group(1) + _REDACTED, out)
    if urls:
        out = _URL.sub(lambda m: redact_url(m.group(0)), out)
    return out
