"""Numbers as a user reads them in the panels: sizes, speeds, durations."""
from __future__ import annotations

from typing import Optional

from ..units import human_duration as duration  # noqa: F401 (the panels' names for the one formatter)
from ..units import human_size
from ..units import human_speed as speed  # noqa: F401


def size(n: Optional[float]) -> str:
    """1536 → "1.5 KB"; None → "?" (a panel cell has no room for more)."""
    return human_size(n, unknown="?")


def shorten(text: str, limit: int = 60) -> str:
    """Keep both ends of a long URL or path: the host and the file name are what a user recognises."""
    if len(text) <= limit:
        return text
    head = limit // 2 - 1
    return f"{text[:head]}…{text[-(limit - head - 1):]}"
