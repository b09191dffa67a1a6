"""The `.part` and its `.part.json` state: what is on disk, and whether it can be trusted.

The rule that keeps every crash point safe: the state is written *before* the data it describes
can grow past what it says, and it never claims a byte that is not already written.

- one stream: the state (mode "single") is saved before the first byte; the `.part` then only grows
  by appending, so its length is the resume point;
- segments: the state (mode "segments", every range's progress) is saved *before* the `.part` is
  preallocated to its full length, and afterwards only with counts of bytes already written.

A `.part` whose state is missing, unreadable, of the wrong shape, for another link, or that does
not agree with the file's length is worthless: it is deleted and the download starts over. Saving
goes through a temporary file and `os.replace`, so a crash mid-save leaves the previous state.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.json"
LOCK_SUFFIX = ".part.lock"
STATE_VERSION = 2
MODES = ("single", "segments")


@dataclass
class PartState:
    """What we know about a `.part`: enough to resume it in another process."""

    mode: str = "single"  # "single": the .part's length is what is done; "segments": `segments` says
    name: Optional[str] = None  # the file name decided for this download (never re-derived on resume)
    origin: Optional[str] = None  # which link this .part belongs to (redacted URL)
    validator: Optional[str] = None  # ETag or Last-Modified, for If-Range and to spot a changed file
    total: Optional[int] = None
    segments: Optional[list] = None  # [[start, end, done], ...] in mode "segments"
    version: int = STATE_VERSION

    @classmethod
    def load(cls, path: Path) -> Optional["PartState"]:
        """The saved state, or None when it is missing or damaged in any way (then the .part is worthless)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data) -> Optional["PartState"]:
        """Strict: every field of the right type, or None (a list, a string, a truncated write, an old format)."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION or data.get("mode") not in MODES:
            return None
        for key in ("name", "origin", "validator"):
            if data.get(key) is not None and not isinstance(data[key], str):
                return None
        total = data.get("total")
        if total is not None and (type(total) is not int or total < 0):
            return None
        segments = data.get("segments")
        if data["mode"] == "segments":
            if total is None or not _rows(segments):
                return None
        elif segments is not None:
            return None
        return cls(mode=data["mode"], name=data.get("name"), origin=data.get("origin"),
                   validator=data.get("validator"), total=total, segments=segments)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(self)))
        os.replace(tmp, path)


def _rows(rows) -> bool:
    return isinstance(rows, list) and bool(rows) and all(
        isinstance(r, list) and len(r) == 3 and all(type(v) is int and v >= 0 for v in r) for r in rows)


@dataclass(frozen=True)
class Target:
    """The final path and its temporary companions, all in one folder (same filesystem: atomic rename)."""

    final: Path

    @property
    def part(self) -> Path:
        return self.final.with_name(self.final.name + PART_SUFFIX)

    @property
    def state(self) -> Path:
        return self.final.with_name(self.final.name + STATE_SUFFIX)

    @property
    def lock(self) -> Path:
        return self.final.with_name(self.final.name + LOCK_SUFFIX)

    def discard(self) -> None:
        for path in (self.part, self.state):
            path.unlink(missing_ok=True)


def trusted_state(target: Target, origin: str) -> Optional[PartState]:
    """The state of `target`'s `.part` when the pair can be trusted for `origin`, else None (both deleted).

    Trusted means: the state is whole and of this link, and the `.part`'s length fits it (a one-stream
    `.part` no longer than the file; a segmented one exactly the file's length).
    """
    if not target.part.exists():
        target.state.unlink(missing_ok=True)
        return None
    state = PartState.load(target.state)
    if state is None or state.origin != origin or state.name != target.final.name:
        target.discard()
        return None
    size = target.part.stat().st_size
    if state.mode == "single" and state.total is not None and size > state.total:
        target.discard()
        return None
    if state.mode == "segments":
        from .segments import SegmentPlan

        if size != state.total or SegmentPlan.from_state(state.total, state.segments, 0) is None:
            target.discard()  # rows that do not tile the file exactly cannot account for its bytes
            return None
    return state


def name_in_progress(folder: Path, origin: str) -> Optional[str]:
    """The name an unfinished download of `origin` in `folder` decided on (its state says), else None.

    This is how a resumed download keeps the name that only its first response carried.
    """
    try:
        candidates = sorted(folder.glob("*" + STATE_SUFFIX), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for path in candidates:
        state = PartState.load(path)
        if state is not None and state.origin == origin and state.name and path.name == state.name + STATE_SUFFIX \
                and (folder / (state.name + PART_SUFFIX)).exists():
            return state.name
    return None
