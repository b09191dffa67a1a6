"""Numbers as people read them, and the size of what is on disk: the one place for both.

Sizes use powers of 1024 with the short units file managers show ("1.5 KB", "6.5 GB"), as A1111 and ComfyUI do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_size(n: Optional[float], unknown: str = "size unknown") -> str:
    """1536 → "1.5 KB"; None → `unknown`."""
    if n is None:
        return unknown
    n = float(n)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_speed(bytes_per_second: Optional[float]) -> str:
    """2.5e6 → "2.4 MB/s"; None or 0 → "0 B/s"."""
    return f"{human_size(bytes_per_second or 0)}/s"


def human_duration(seconds: Optional[float]) -> str:
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


def folder_size(path: os.PathLike | str) -> int:
    """Bytes of every file under `path` (a file: its own size); files that vanish or cannot be read count 0."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # removed or unreadable while we looked (a download in progress)
            pass
    return total
