"""The sources' one metadata GET: JSON from a service API, with short retries and one-line errors.

The byte mover is `colab_sd.transfer`; this is only for small API answers (a few KB).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urljoin, urlsplit

from ..errors import DownloadError, NotFoundError
from ..http import failure_words, may_send_credentials
from ..tokens import redact, redact_url

log = logging.getLogger("colab_sd.sources")

TIMEOUT = (10, 30)  # connect, read (seconds)
RETRIES = 3  # attempts in all; APIs like CivitAI's answer 5xx now and then
BACKOFF = 0.5  # seconds before the 2nd attempt, doubling after


def get_json(url: str, *, headers: Optional[Mapping[str, str]] = None, service: str, missing: str,
             auth_error: Exception, retries: Optional[int] = None,
             trusted: Callable[[str], bool] = lambda url: False) -> Any:
    """GET `url` as JSON. 404 → NotFoundError(missing); 401/403 → `auth_error`; 5xx / 429 / network
    errors are retried a few times, then DownloadError. A redirect is followed only to the same
    host or one `trusted(url)` accepts (the service's own hosts): the headers carry a token."""
    import requests  # lazy: `import colab_sd` stays fast

    shown = redact_url(url)
    last: Optional[str] = None
    hops = 0
    attempt = 0
    while attempt < (retries or RETRIES):
        attempt += 1
        if attempt > 1:  # never before the first request (issue 13 B6: every call used to wait 0.5 s)
            time.sleep(min(4.0, BACKOFF * 2 ** (attempt - 2)))
        sent = dict(headers or {}) if may_send_credentials(url, url) else {}  # a token never goes over plain http
        try:
            with requests.get(url, headers={"Accept": "application/json", **sent},
                              timeout=TIMEOUT, allow_redirects=False) as r:
                status, body = r.status_code, r.content
                location = r.headers.get("Location", "")
        except requests.RequestException as err:
            last = failure_words(err)
            log.info("metadata %s: %s (attempt %d)", shown, last, attempt)
            continue
        log.debug("metadata %s → %s", shown, status)
        if status == 404:
            raise NotFoundError(missing)
        if status in (401, 403) or (300 <= status < 400 and "login" in location.lower()):
            raise auth_error
        if status in (301, 302, 303, 307, 308) and location and hops < 5:
            target = urljoin(url, location)
            downgrade = urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https"
            if not downgrade and (urlsplit(target).netloc == urlsplit(url).netloc or trusted(target)):
                url, shown, hops, attempt = target, redact_url(target), hops + 1, attempt - 1
                continue
        if status == 429 or status >= 500:
            last = f"HTTP {status}"
            continue
        if status != 200:
            raise DownloadError(f"{service} answered HTTP {status} for {shown}; try again later")
        try:
            import json

            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise DownloadError(f"{service} sent something that is not JSON for {shown}; "
                                "is the endpoint right? try again later") from None
    raise DownloadError(redact(f"could not reach {service} ({last}) for {shown}; check the connection and try again"))
