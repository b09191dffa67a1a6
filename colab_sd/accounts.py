"""Who does a token belong to? One small check per service, for the Tokens panel.

CivitAI: `GET {CIVITAI_ENDPOINT or https://civitai.com}/api/v1/me` with the token as Bearer.
Hugging Face: `huggingface_hub`'s whoami against `HF_ENDPOINT` (or the Hub).
Both return an `Account` or raise a `ColabSDError` whose one-line message never contains the token.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from .errors import AuthError, ColabSDError
from .tokens import Secret, Token, redact

log = logging.getLogger("colab_sd.accounts")

CIVITAI_DEFAULT = "https://civitai.com"
CIVITAI_KEYS_HINT = "civitai.com → Account settings → API keys"
HF_KEYS_HINT = "huggingface.co/settings/tokens"
TIMEOUT = 15.0


@dataclass(frozen=True)
class Account:
    """The user a token belongs to."""

    service: str  # "civitai" or "huggingface"
    username: str


def _secret_value(token: Token | Secret | str) -> str:
    if isinstance(token, Token):
        token = token.secret
    value = token.reveal() if isinstance(token, Secret) else str(token or "").strip()
    if not value:
        raise AuthError("no token to check: enter one in the Tokens panel or set it as a Colab secret")
    return value


def civitai_endpoint() -> str:
    from .civitai.client import endpoint_override  # one reading of $CIVITAI_ENDPOINT (also its /api/v1 form)

    return endpoint_override() or CIVITAI_DEFAULT


def check_civitai(token: Token | Secret | str, *, endpoint: Optional[str] = None, timeout: float = TIMEOUT) -> Account:
    """The CivitAI account behind `token`; raises AuthError when CivitAI rejects it."""
    import requests

    value = _secret_value(token)
    url = f"{(endpoint or civitai_endpoint()).rstrip('/')}/api/v1/me"
    try:
        # No redirects: a rejected token is sometimes answered with a redirect to the login page.
        response = requests.get(url, headers={"Authorization": f"Bearer {value}", "Accept": "application/json"},
                                timeout=timeout, allow_redirects=False)
    except requests.RequestException as err:
        raise ColabSDError(f"could not reach CivitAI to check the token ({type(err).__name__}); check the connection and try again") from None
    if response.status_code in (401, 403) or 300 <= response.status_code < 400:
        raise AuthError(f"CivitAI rejected this token (HTTP {response.status_code}): create a new API key at {CIVITAI_KEYS_HINT}")
    if response.status_code != 200:
        raise ColabSDError(f"CivitAI answered HTTP {response.status_code} to the token check; try again later")
    try:
        data = response.json()
    except ValueError:
        data = None
    name = data.get("username") if isinstance(data, dict) else None
    if not name:
        # /api/v1/me answers `null`-ish bodies for anonymous requests on some mirrors.
        raise AuthError(f"CivitAI did not recognise this token: create a new API key at {CIVITAI_KEYS_HINT}")
    return Account("civitai", redact(name))


def check_huggingface(token: Token | Secret | str, *, endpoint: Optional[str] = None) -> Account:
    """The Hugging Face account behind `token`; raises AuthError when the Hub rejects it."""
    from huggingface_hub import HfApi

    value = _secret_value(token)
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None)
    try:
        data = api.whoami(token=value)
    except Exception as err:  # huggingface_hub raises its own HTTP errors and the HTTP client's network errors
        status = getattr(getattr(err, "response", None), "status_code", None)
        log.debug("HF whoami failed: %s", redact(err))
        if status == 401:
            raise AuthError(f"Hugging Face rejected this token (HTTP 401): create a new one at {HF_KEYS_HINT}") from None
        if status is not None:
            raise ColabSDError(f"Hugging Face answered HTTP {status} to the token check; try again later") from None
        raise ColabSDError(f"could not reach Hugging Face to check the token ({type(err).__name__}); check the connection and try again") from None
    name = data.get("name") if isinstance(data, dict) else None
    if not name:
        raise AuthError(f"Hugging Face did not recognise this token: create a new one at {HF_KEYS_HINT}")
    return Account("huggingface", redact(name))


CHECKS = {"civitai": check_civitai, "huggingface": check_huggingface}


def check(service: str, token: Token | Secret | str) -> Account:
    """Check a token of `service` ("civitai" or "huggingface")."""
    if service not in CHECKS:
        raise ColabSDError(f"unknown service {service!r}; expected one of {', '.join(CHECKS)}")
    return CHECKS[service](token)
