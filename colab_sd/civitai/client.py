"""The one way colab_sd talks to CivitAI's API: every host, one request per need, polite under load.

Hosts. civitai.com, civitai.red and civitai.green serve one API (reference civitai-api.md §6); the host of a link
the user pasted is asked first, then the others. In April 2026 the .com API filtered mature content for a few
days, so a look-up that finds nothing on one host asks the other before it says "unknown". `$CIVITAI_ENDPOINT`
(a mirror, a local fake) replaces them all.

Politeness. Answers are cached for the life of the process (five minutes, CivitAI's own `s-maxage`), so
opening a search result, downloading it and recreating one of its images asks once. 429 and 503 are retried after
`Retry-After`; 5xx and Cloudflare's 524 are CivitAI's side and say so ("not your connection").

Secrets. The token goes as `Authorization: Bearer …` to CivitAI hosts only (never in a URL), and never to the image
CDN: thumbnails are fetched by `fetch_image`, which sends no credentials at all.
"""
from __future__ import annotations

import hashlib
import json
import re
import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import urlencode, urljoin, urlsplit

from .._version import __version__
from ..errors import AuthError, DownloadError, InputError, NotFoundError
from ..tokens import TokenStore, redact, redact_url
from . import shapes

log = logging.getLogger("colab_sd.civitai")

HOSTS = ("civitai.com", "civitai.red", "civitai.green")
API_BASES = ("https://civitai.com", "https://civitai.red")  # asked in this order when no link says otherwise
USER_AGENT = f"colab-sd/{__version__}"  # not a browser: CivitAI then answers errors as JSON, not redirects
TIMEOUT = (10, 30)
ATTEMPTS = 3  # per host, for 5xx / 429 / connection trouble
BACKOFF = 0.5  # seconds before the 2nd attempt, doubling after (a test may lower it)
MAX_WAIT = 30.0  # the longest Retry-After waited for inline; longer ones are reported
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 512

NEEDS_TOKEN = ("this model needs a CivitAI API token: set CIVITAI_TOKEN or enter it in the Tokens panel "
               "(civitai.com → Account settings → API keys)")
BAD_TOKEN = ("CivitAI rejected the API token ({origin}): check CIVITAI_TOKEN or the Tokens panel "
             "(civitai.com → Account settings → API keys)")


# ---------------------------------------------------------------------------------------------- hosts


def endpoint_override() -> Optional[str]:
    """`$CIVITAI_ENDPOINT` as a site base (`https://host[/prefix]`, no trailing slash), or None.

    Many tools document the variable as the API base (`https://civitai.com/api/v1`): that form is read
    as its site, since every path here (`/api/v1/…`, `/api/download/…`) is built from the site base."""
    from ..sources.hosts import env_endpoint  # lazy: sources imports this module

    value = env_endpoint("CIVITAI_ENDPOINT")
    if value:
        value = re.sub(r"(/api(/v1)?)+$", "", value, flags=re.IGNORECASE).rstrip("/") or value
    return value


def is_civitai_host(url: str) -> bool:
    """True for civitai.com / .red / .green (and subdomains) and the `$CIVITAI_ENDPOINT` host."""
    from ..sources.hosts import on_hosts

    return on_hosts(url, HOSTS, "CIVITAI_ENDPOINT", subdomains=True)


def is_api_host(url: str) -> bool:
    """A host that may see the token: the site hosts (no subdomain but www) or the override's host."""
    from ..sources.hosts import on_hosts

    return on_hosts(url, HOSTS, "CIVITAI_ENDPOINT", subdomains=False)


def link_base(link: Optional[str]) -> Optional[str]:
    """`scheme://host` of a CivitAI link (www. dropped), or None for anything else (a urn, a file)."""
    if not link or not str(link).lower().startswith(("http://", "https://")) or not is_api_host(str(link)):
        return None
    parts = urlsplit(str(link))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc[4:] if netloc.lower().startswith('www.') else netloc}"


def bases_for(link: Optional[str] = None) -> list[str]:
    """API bases to ask, in order: the override alone, else the link's host then the others."""
    override = endpoint_override()
    if override:
        return [override]
    order = [b for b in [link_base(link)] if b]
    order += [b for b in API_BASES if b not in order]
    return order


# ---------------------------------------------------------------------------------------------- cache


class _Cache:
    """URL → JSON answers, for a while (thread-safe; the panel's workers share it)."""

    def __init__(self):
        self._data: dict[tuple, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            return hit[1]

    def put(self, key: tuple, value: Any, seconds: float) -> None:
        with self._lock:
            if len(self._data) >= CACHE_ENTRIES:
                self._data.pop(next(iter(self._data)))
            self._data[key] = (time.monotonic() + seconds, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_CACHE = _Cache()
_MISSING = object()  # a cached 404


def clear_cache() -> None:
    """Forget every cached answer (after a token change the next look-ups ask again)."""
    _CACHE.clear()


# ---------------------------------------------------------------------------------------------- client


class Client:
    """CivitAI's public REST API. `tokens` supplies the optional token. `hosts` says where each CivitAI host's
    API is reached ({"civitai.com": "https://civitai.com", …}, the default); two local servers standing in
    for civitai.com and civitai.red are given this way. `$CIVITAI_ENDPOINT` wins over both."""

    def __init__(self, tokens: Optional[TokenStore] = None, *, hosts: Optional[Mapping[str, str]] = None):
        self.tokens = tokens if tokens is not None else TokenStore()
        self._hosts = {k.lower(): v.rstrip("/") for k, v in hosts.items()} if hosts else None
        self.requests = 0  # requests actually sent (cache hits are free)

    def bases(self, link: Optional[str] = None) -> list[str]:
        """API bases to ask, in order: the link's own host first, then civitai.com and civitai.red."""
        if self._hosts is None or endpoint_override():
            return bases_for(link)
        host = (urlsplit(str(link or "")).hostname or "").lower()
        host = host[4:] if host.startswith("www.") else host
        order = [self._hosts[host]] if host in self._hosts else []
        order += [self._hosts[h] for h in ("civitai.com", "civitai.red") if h in self._hosts]
        return list(dict.fromkeys(order))

    def is_api(self, url: str) -> bool:
        """May `url` see the token? The site hosts, the override, or a base given in `hosts`."""
        if is_api_host(url):
            return True
        key = urlsplit(url)[:2]
        return any(urlsplit(b)[:2] == key for b in (self._hosts or {}).values())

    # -- one host ---------------------------------------------------------------------------------

    def get(self, base: str, path: str, params: Iterable[tuple[str, Any]] = (), *, missing: str = "",
            cache: bool = True) -> Any:
        """GET `base + path?params` as JSON. 404 → NotFoundError(missing); 401/403 → AuthError; see the module doc."""
        query = urlencode([(k, v) for k, v in params if v is not None and v != ""])
        url = f"{base}{path}" + (f"?{query}" if query else "")
        token = self.tokens.get("civitai")
        key = (url, hashlib.sha256(token.secret.reveal().encode()).hexdigest()[:16] if token else "")
        if cache:
            hit = _CACHE.get(key)
            if hit is _MISSING:
                raise NotFoundError(missing or f"CivitAI has nothing at {redact_url(url)}")
            if hit is not None:
                return hit
        try:
            data = self._fetch(url, token, missing)
        except NotFoundError:
            if cache:  # "unknown" is an answer too: an identify run does not ask twice about one file
                _CACHE.put(key, _MISSING, CACHE_SECONDS)
            raise
        if cache:
            _CACHE.put(key, data, CACHE_SECONDS)
        return data

    def _fetch(self, url: str, token, missing: str) -> Any:
        import requests  # lazy: `import colab_sd` stays light

        from ..http import failure_words, may_send_credentials

        shown, hops, attempt, last = redact_url(url), 0, 0, ""
        while attempt < ATTEMPTS:
            attempt += 1
            headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
            if token is not None and self.is_api(url) and may_send_credentials(url, url):  # never over plain http
                headers.update(token.header())
            try:
                self.requests += 1
                with requests.get(url, headers=headers, timeout=TIMEOUT, allow_redirects=False) as r:
                    status, body, got = r.status_code, r.content, r.headers
            except requests.RequestException as err:
                last = failure_words(err)
                log.info("CivitAI %s: %s (attempt %d)", shown, last, attempt)
                if attempt < ATTEMPTS:
                    time.sleep(min(4.0, BACKOFF * 2 ** (attempt - 1)))
                continue
            log.debug("CivitAI %s → %s", shown, status)
            if status in (301, 302, 303, 307, 308) and hops < 5:
                target = urljoin(url, got.get("Location", ""))
                if "login" in urlsplit(target).path.lower():
                    raise self._auth_error(token)
                if urlsplit(target).netloc == urlsplit(url).netloc or self.is_api(target):
                    url, shown, hops, attempt = target, redact_url(target), hops + 1, attempt - 1
                    continue
            if status == 200:
                try:
                    data = json.loads(body.decode("utf-8"))
                except ValueError:
                    data = None
                if not isinstance(data, dict):  # every GET of the v1 API answers with an object
                    raise DownloadError(f"CivitAI sent something that is not a JSON object for {shown}; is the "
                                        "endpoint right? try again later")
                return data
            if status == 404:
                raise NotFoundError(missing or f"CivitAI has nothing at {shown}")
            if status in (401, 403):
                raise self._auth_error(token)
            if status == 429 or status >= 500:
                last = _describe(status)
                wait = _retry_after(got.get("Retry-After"))
                if wait is not None and wait > MAX_WAIT:
                    raise DownloadError(f"CivitAI asks to slow down ({last}): try again in {int(wait)} s")
                if attempt < ATTEMPTS:
                    time.sleep(wait if wait is not None else min(4.0, BACKOFF * 2 ** (attempt - 1)))
                continue
            if status == 400:  # a request CivitAI will never accept (a bad cursor, an id out of range): say its words
                raise InputError(f"CivitAI refused the request for {shown} (400{_said(body)}): check the options "
                                 "(a cursor from another search, an id out of range); trying again will not help")
            raise DownloadError(f"CivitAI answered HTTP {status} for {shown}; try again later")
        if last.startswith("HTTP 429"):
            raise DownloadError(f"CivitAI asks to slow down ({last}) for {shown}: wait a minute and try again")
        if last.startswith("HTTP"):
            raise DownloadError(f"CivitAI is having trouble on its side ({last}) for {shown}: this is not your "
                                "connection; try again in a few minutes")
        raise DownloadError(redact(f"could not reach CivitAI ({last}) for {shown}; check the connection and "
                                   "try again"))

    def _auth_error(self, token) -> AuthError:
        return AuthError(BAD_TOKEN.format(origin=token.origin) if token else NEEDS_TOKEN)

    # -- every host -------------------------------------------------------------------------------

    def lookup(self, path: str, params: Iterable[tuple[str, Any]] = (), *, link: Optional[str] = None,
               missing: str, empty: Callable[[Any], bool] = lambda data: False) -> tuple[Any, str]:
        """(answer, base) from the first host that has it: a 404 or an `empty(answer)` asks the next host.
        Raises NotFoundError(missing) when none has it."""
        params = list(params)
        for base in self.bases(link):
            try:
                data = self.get(base, path, params, missing=missing)
            except NotFoundError:
                continue
            if not empty(data):
                return data, base
        raise NotFoundError(missing)

    # -- the endpoints ------------------------------------------------------------------------------

    def model(self, model_id: int, link: Optional[str] = None) -> tuple[dict, str]:
        """`/api/v1/models/{id}` (versions newest first) and the base that answered."""
        data, base = self.lookup(f"/api/v1/models/{int(model_id)}", link=link, missing=(
            f"CivitAI has no model {model_id} (it does not exist or was removed); check the link"))
        return shapes.model(data), base

    def version(self, version_id: int, link: Optional[str] = None) -> tuple[dict, str]:
        """`/api/v1/model-versions/{id}` (files, trained words, images with `meta`) and the base that answered."""
        data, base = self.lookup(f"/api/v1/model-versions/{int(version_id)}", link=link, missing=(
            f"CivitAI has no model version {version_id} (it does not exist or was removed); check the link"))
        return shapes.version(data), base

    def by_hash(self, digest: str, link: Optional[str] = None) -> Optional[tuple[dict, str]]:
        """The version holding a file with this hash (AutoV2, SHA256, any kind), asking every host; None if unknown."""
        try:
            data, base = self.lookup(f"/api/v1/model-versions/by-hash/{digest.strip().upper()}", link=link,
                                     missing=f"CivitAI does not know a file with hash {digest}")
        except NotFoundError:
            return None
        return shapes.version(data), base

    def image(self, image_id: int, link: Optional[str] = None) -> tuple[dict, str]:
        """One image with its generation data, at any content level (`nsfw=X`: the page's own look-up)."""
        params = [("imageId", int(image_id)), ("withMeta", "true"), ("flatMeta", "true"), ("nsfw", "X")]
        data, base = self.lookup("/api/v1/images", params, link=link,
                                 empty=lambda d: not [i for i in d.get("items") or [] if isinstance(i, dict)],
                                 missing=f"CivitAI has no image {image_id} (deleted, hidden or never there); "
                                         "check the link")
        return next(i for i in data["items"] if isinstance(i, dict)), base

    def images(self, params: Iterable[tuple[str, Any]], link: Optional[str] = None) -> tuple[dict, str]:
        """`/api/v1/images` with the given parameters (cursor paging), from the first host that answers."""
        return self.lookup("/api/v1/images", params, link=link, missing="CivitAI has no such images")

    def models(self, params: Iterable[tuple[str, Any]], link: Optional[str] = None) -> tuple[dict, str]:
        """`/api/v1/models` (search and browse); an empty page is an answer here, not "ask another host"."""
        base = self.bases(link)[0]
        return self.get(base, "/api/v1/models", params, missing="CivitAI's model search is not there"), base


def _said(body: bytes) -> str:
    """`: <CivitAI's error text>` from a JSON error body (its `error` / `message`), or ""."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return ""
    text = data.get("error") or data.get("message") if isinstance(data, dict) else None
    if isinstance(text, (dict, list)):
        text = json.dumps(text)[:160]
    return f": {redact(str(text))[:160]}" if text else ""


def fetch_image(url: str, session=None, timeout: float = 20.0, *, require_image: bool = True) -> tuple[bytes, str]:
    """An image's bytes and content type, with no credentials at all (thumbnails, previews, recreate URLs).
    `require_image=False` takes any 200 body (a plain web server may label an image application/octet-stream).
    Raises DownloadError with one line when it cannot."""
    import requests

    from ..http import failure_words

    getter = session or requests
    try:
        r = getter.get(url, headers={"User-Agent": USER_AGENT, "Accept": "image/webp,image/*"}, timeout=timeout)
    except requests.RequestException as err:
        raise DownloadError(f"could not fetch the image {redact_url(url)} ({failure_words(err)}); check the link "
                            "and the connection") from None
    with r:
        is_image = r.headers.get("Content-Type", "").startswith("image/")
        if r.status_code != 200 or (require_image and not is_image):
            raise DownloadError(f"the image {redact_url(url)} answered HTTP {r.status_code}")
        return r.content, r.headers.get("Content-Type", "image/jpeg")


def _describe(status: int) -> str:
    if status == 524:
        return "HTTP 524: CivitAI took too long to answer"
    return f"HTTP {status}"


def _retry_after(value: Optional[str]) -> Optional[float]:
    from ..http import parse_retry_after

    return parse_retry_after(value)
