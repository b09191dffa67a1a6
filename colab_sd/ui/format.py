"""Numbers as a user reads them in the panels: sizes, speeds, durations."""
from __future__ import annotations

from typing import Optional

_UNITS = ("B", "KB", "MB", "GB", "TB")


def size(n: Optional[float]) -> str:
    """1536 → "1.5 KB" (powers of 1024, like a file manager)."""
    if n is None:
        return "?"
    n = float(n)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def speed(bytes_per_second: Optional[float]) -> str:
    return f"{size(bytes_per_second or 0)}/s"


def duration(seconds: Optional[float]) -> str:
    """65 → "1m 05s"; None → "?" (unknown)."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def shorten(text: str, limit: int = 60) -> str:
    """Keep both ends of a long URL or path: the host and the file name are what a user recognises."""
    if len(text) <= limit:
        return text
    head = limit // 2 - 1
    return f"{text[:head]}…{text[-(limit - head - 1):]}"
