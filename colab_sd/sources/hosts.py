"""Which host a URL is on, and endpoint overrides from the environment: shared by the sources."""
from __future__ import annotations

import os
from typing import Iterable, Optional
from urllib.parse import urlsplit


def env_endpoint(variable: str) -> Optional[str]:
    """`$variable` without a trailing slash (a local fake, a mirror, a self-hosted service), or None."""
    value = os.environ.get(variable, "").strip().rstrip("/")
    return value or None


def host_key(url: str) -> str:
    """`host` or `host:port`, lower case: what two URLs must share to be on the same service."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def on_hosts(url: str, hosts: Iterable[str], override_variable: str, *, subdomains: bool) -> bool:
    """True when `url` is on one of `hosts` (and their subdomains, or just `www.`), or on the override's host."""
    key = host_key(url)
    host = key.split(":")[0]
    for known in hosts:
        if host == known or host == "www." + known or (subdomains and host.endswith("." + known)):
            return True
    override = env_endpoint(override_variable)
    return bool(override) and key == host_key(override)
