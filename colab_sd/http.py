"""HTTP for downloads: opening a stream by hand through redirects, and what each answer means.

Small pure functions decide (how long to wait, what a Content-Range says, whether a body is an error
page); `open_stream` applies them. Auth headers from a source go to the origin host only, never to a
host a redirect leads to (signed storage URLs must not see a CivitAI or Hub token).
"""
from __future__ import annotations

import json
import http.client
import logging
import re
import time
from email.utils import parsedate_to_datetime
from typing import Mapping, Optional
from urllib.parse import urljoin, urlsplit

import requests

from ._version import __version__
from .errors import AuthError, DownloadError, NotFoundError
from .events import Info, Listener, guard
from .remote import RemoteFile
from .tokens import redact, redact_url
from .units import human_size  # noqa: F401 (receive and the speed rule name sizes through here)

log = logging.getLogger("colab_sd.http")

USER_AGENT = f"colab-sd/{__version__}"
MAX_REDIRECTS = 10
# Names whose bodies may legitimately be text; every other name expects binary model bytes.
TEXT_EXTENSIONS = (".json", ".txt", ".yaml", ".yml", ".md", ".html", ".htm", ".xml", ".csv", ".py",
                   ".jinja")  # .jinja: chat templates beside tokenizers
_LOGIN_PATH = re.compile(r"/(login|signin|sign-in|auth)(/|$|\?)", re.IGNORECASE)


class Retryable(Exception):
    """A failure worth another attempt: connection trouble, a stall, 5xx, 429.

    `attempts` caps the attempts for this kind of failure below the usual budget: a host that refuses
    connections outright is more likely a wrong URL than a hiccup, and should not cost minutes.
    """

    def __init__(self, reason: str, wait: Optional[float] = None, attempts: Optional[int] = None,
                 progressed: Optional[bool] = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.attempts = attempts
        self.progressed = progressed  # False: this failure never earns a free retry, whatever arrived before


class Changed(Retryable):
    """The file on the server changed under a download (another validator or size): every byte kept so far
    belongs to the old version, so the `.part` is deleted and the download starts over."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}; starting over", wait=0, progressed=False)


def check_same_version(headers: Mapping[str, str], validator: Optional[str], total: Optional[int],
                       their_total: Optional[int]) -> None:
    """Raise Changed when a response is of another version than the bytes already on disk, whatever the
    server did with If-Range (some ignore it and answer 206 from the new file)."""
    theirs = strong_validator(headers)
    if validator and theirs and theirs != validator:
        raise Changed("the file changed on the server during the download")
    if total is not None and their_total is not None and their_total != total:
        raise Changed(f"the file on the server is now {their_total} bytes, not {total}")


REFUSED_ATTEMPTS = 3
# A failed attempt that moved the download on by at least this much does not count against the retries:
# a server that drops every connection after a megabyte still finishes the file.
PROGRESS_CREDIT = 256 << 10


def _unreachable(url: str, err: BaseException) -> Exception:
    """What a failure to connect means: a host name that does not resolve is final, a refusal is retried briefly."""
    host = urlsplit(url).hostname
    chain, seen = [], err
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    if "NameResolutionError" in text or "gaierror" in text or "Name or service not known" in text:
        return DownloadError(f"cannot find the host {host}: check the URL (and the internet connection)")
    if any(isinstance(e, http.client.LineTooLong) or type(e) is http.client.HTTPException for e in chain):
        # Over-long lines or more than http.client's 100 headers: the server's answer is not one we can read,
        # and asking again gets the same answer.
        return DownloadError(f"{host} sent a malformed answer ({short(chain[-1])}); the file cannot be "
                             "downloaded from this server")
    if "ConnectionRefused" in text or "Connection refused" in text:
        return Retryable(f"{host} refused the connection", attempts=REFUSED_ATTEMPTS)
    return Retryable(f"cannot reach {host}: {short(err)}")


def backoff(attempt: int, options, retry_after: Optional[float] = None) -> float:
    """Seconds to wait before attempt `attempt` (1-based): the server's Retry-After, else capped doubling."""
    if retry_after is not None:
        return max(0.0, min(retry_after, options.backoff_cap))
    return min(options.backoff_base * (2 ** (attempt - 1)), options.backoff_cap)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def parse_content_range(value: Optional[str]) -> tuple[Optional[int], Optional[int], Optional[int]]:
    """`bytes 100-199/1000` → (100, 199, 1000); `bytes */1000` → (None, None, 1000); unknown parts None."""
    if not value:
        return None, None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)", value, re.IGNORECASE)
    if not m:
        return None, None, None
    start, end, total = m.groups()
    return (int(start) if start else None, int(end) if end else None, int(total) if total and total != "*" else None)


def strong_validator(headers: Mapping[str, str]) -> Optional[str]:
    """What If-Range may carry: a strong ETag, else Last-Modified (weak ETags are not allowed there)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def expects_binary(name: Optional[str]) -> bool:
    return not (name or "").lower().endswith(TEXT_EXTENSIONS)


def looks_like_text(head: bytes) -> bool:
    """Bytes a person could read (an error page, a message), as opposed to model weights."""
    sample = head[:2048]
    if not sample or b"\x00" in sample:  # weights (and safetensors' length prefix) have NUL bytes early
        return False
    decoded = sample.decode("utf-8", "replace")
    return decoded.count("\ufffd") <= len(decoded) // 20


def looks_like_page(content_type: Optional[str], head: bytes) -> bool:
    """An HTML / JSON / text page (by Content-Type or first bytes) where model bytes were expected.

    The body must read as text too: servers label binary files text/plain or worse, and a model file
    must never be refused because of its label.
    """
    if not looks_like_text(head):
        return False
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml", "application/json", "application/problem+json", "text/plain",
                 "application/xml", "text/xml"):
        return True
    start = head.lstrip()[:64].lower()
    return start.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or (
        start.startswith(b"{") and (b'"error' in head[:2048].lower() or b'"message' in head[:2048].lower()))


def page_excerpt(body: bytes, limit: int = 160) -> str:
    """A short, token-free human summary of an error page: a JSON message or the HTML title/text."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "reason", "msg"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message") or json.dumps(value)
            if value:
                text = str(value)
                break
    else:
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        body_text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", text, flags=re.IGNORECASE | re.DOTALL)
        body_text = re.sub(r"<[^>]+>", " ", body_text)
        text = (title.group(1) + ": " if title else "") + body_text
    text = re.sub(r"\s+", " ", text).strip()
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def may_send_credentials(url: str, origin: str) -> bool:
    """A source's auth headers go to `url` only on the origin itself (same scheme, host and port: a redirect
    elsewhere, or from https down to http, never sees them) and only over https, or plain http to a loopback
    endpoint the user configured (a local mirror, the test fakes)."""
    if not same_origin(url, origin):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and (parts.hostname or "") in LOOPBACK)


class SpeedRule:
    """The lowest-speed rule (curl's --speed-limit / --speed-time): fewer than `limit` bytes/s over a
    whole window of `window` seconds is a stall, however steadily the bytes trickle in.

    `feed(n)` after every read costs one clock call; it raises Retryable when a window ends short.
    """

    __slots__ = ("need", "window", "got", "ends")

    def __init__(self, limit: float, window: float):
        self.need = max(1, int(limit * window))
        self.window = window
        self.got = 0
        self.ends = time.monotonic() + window

    def feed(self, nbytes: int) -> None:
        self.got += nbytes
        now = time.monotonic()
        if now >= self.ends:
            if self.got < self.need:
                raise Retryable(f"the download stalled: {self.got} bytes in the last {self.window:g} s "
                                f"(the lowest speed allowed is {human_size(self.need / self.window)}/s)", wait=0,
                                progressed=False)
            self.got, self.ends = 0, now + self.window


def read_upto(raw, limit: int, rule: Optional[SpeedRule], decode: bool = False) -> bytes:
    """Up to `limit` bytes of a body, read as they arrive so that a trickle meets the speed rule
    instead of blocking a plain read(limit) for ever."""
    got = bytearray()
    while len(got) < limit:
        data = raw.read1(limit - len(got), decode_content=decode)
        if not data:
            break
        got += data
        if rule is not None:
            rule.feed(len(data))
    return bytes(got)


def encoded(headers: Mapping[str, str]) -> bool:
    """True when the body comes compressed (Content-Encoding gzip, br…) although identity was asked for."""
    value = (headers.get("Content-Encoding") or "").strip().lower()
    return value not in ("", "identity")


def open_stream(session: requests.Session, remote: RemoteFile, options, *,
                extra_headers: Optional[Mapping[str, str]] = None, emit: Listener = guard(None),
                job: Optional[str] = None) -> requests.Response:
    """GET `remote.url`, following redirects by hand; returns the final, successful streaming response.

    The source's headers (auth) go to the origin only, over https (see `may_send_credentials`). A
    redirect to anything but http(s) (file://, ftp://) is refused; a redirect to a login page, and
    error statuses, become errors here (the source's `explain` gets the first word); 5xx, 429 and
    connection failures raise `Retryable`. Malformed answers (two Content-Lengths…) are one-line
    DownloadErrors.
    """
    url = remote.url
    for hop in range(MAX_REDIRECTS + 1):
        remember_url_secrets(url)
        headers = dict(extra_headers or {})
        if may_send_credentials(url, remote.url):
            headers.update(remote.headers)
        resp = _get(session, url, headers, options)
        if resp.is_redirect:
            location = resp.headers.get("Location", "")
            resp.close()
            target = urljoin(url, location)
            remember_url_secrets(target)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise DownloadError(f"{urlsplit(url).hostname} redirected the download to a {scheme or 'non-http'}: "
                                    "link, which colab_sd never follows; check the link")
            if _LOGIN_PATH.search(urlsplit(target).path):
                raise explained(remote, 302, resp.headers, b"", target) or AuthError(
                    f"the server sent the download to a login page ({urlsplit(target).hostname}): "
                    "this file needs an account token; set it and run again")
            if hop < MAX_REDIRECTS:
                emit(Info(f"redirected to {urlsplit(target).hostname}", job=job))
            log.debug("redirect %s -> %s", redact_url(url), redact_url(target))
            url = target
            continue
        if resp.status_code in (200, 206, 416):
            return resp
        raise_for_status(remote, resp, url)
    raise DownloadError(f"too many redirects (more than {MAX_REDIRECTS}) for {remote.shown_url}")


def _get(session: requests.Session, url: str, headers: Mapping[str, str], options) -> requests.Response:
    """One GET, no redirects followed; what can go wrong becomes Retryable or a one-line DownloadError."""
    try:
        return session.get(url, headers=headers, stream=True, allow_redirects=False,
                           timeout=(options.connect_timeout, options.stall_timeout))
    except requests.exceptions.SSLError as err:
        raise DownloadError(f"TLS error talking to {urlsplit(url).hostname}: {short(err)}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        raise _unreachable(url, err) from None
    except requests.exceptions.InvalidHeader as err:
        raise DownloadError(f"{urlsplit(url).hostname} sent a malformed answer ({short(err)}); "
                            "the file cannot be trusted from this server") from None
    except (requests.exceptions.RequestException, ValueError) as err:
        raise DownloadError(f"cannot download from {urlsplit(url).hostname}: {short(err)}") from None


def remember_url_secrets(url: str) -> None:
    """Register a URL's credential query values, so a server echoing them back is scrubbed everywhere."""
    redact_url(url)


def explained(remote: RemoteFile, status: int, headers, body: bytes, url: str) -> Optional[Exception]:
    if remote.explain is None:
        return None
    try:
        return remote.explain(status, headers, body, url)
    except Exception:  # a broken explainer must not hide the real failure
        log.debug("explain() raised", exc_info=True)
        return None


def raise_for_status(remote: RemoteFile, resp: requests.Response, url: str) -> None:
    status = resp.status_code
    try:
        body = read_upto(resp.raw, 65536, SpeedRule(1024, 10), decode=encoded(resp.headers))
    except Exception:
        body = b""
    finally:
        resp.close()
    # The source reads its service's words first, busy answers included (CivitAI's hourly download limit is a
    # 429 that no retry within minutes can pass; its 5xx/524 pages are its side, not the user's connection).
    err = explained(remote, status, resp.headers, body, url)
    if err is not None:
        raise err
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise Retryable(f"the server answered {status} {resp.reason or ''}".strip(), wait=retry_after)
    host = urlsplit(url).hostname
    detail = page_excerpt(body) if body else ""
    detail = f" ({detail})" if detail else ""
    if status in (401, 403):
        raise AuthError(f"{host} refused access ({status}){detail}: this file needs a valid token or permission")
    if status in (404, 410):
        raise NotFoundError(f"{host} has no such file ({status}){detail}: check the URL")
    raise DownloadError(f"{host} answered {status} {resp.reason or ''}{detail}".strip())


def failure_words(err: BaseException) -> str:
    """What went wrong with a request, in words a user reads (never an exception class name)."""
    name = type(err).__name__
    if "SSL" in name:
        return "a TLS/certificate error"
    if "Timeout" in name:
        return "no answer in time"
    if "ConnectionError" in name or isinstance(err, ConnectionError):
        return "no connection to the host"
    if "TooManyRedirects" in name:
        return "too many redirects"
    return "the request failed"


def short(err: BaseException) -> str:
    """A one-line, token-free description of a low-level failure."""
    text = str(err)
    if "IncompleteRead" in text or "Connection broken" in text:
        return "the connection broke mid-transfer"
    if "Read timed out" in text or "timed out" in text.lower():
        return "no data for too long (stalled)"
    text = redact(text)
    text = re.sub(r"<urllib3[^>]*>", "", text)
    return text if len(text) <= 140 else text[:139] + "…"
