"""Segmented downloads: several connections fill one preallocated `.part`, each over its own byte range.

CDNs cap each connection, so one file over N ranges approaches the line speed (what `aria2c -x16`
does). The pieces:

- `SegmentPlan`: which byte ranges exist, how far each got, who works on which; idle workers split
  the largest remaining range (work stealing), and the plan is saved in the `.part.json` state so
  another process resumes without refetching finished ranges.
- `PrefixHasher`: sha256 of the contiguous finished prefix, computed while the download runs, so
  verification costs almost nothing at the end.

The workers that fill a plan over several connections are `segment_runner.SegmentRunner`.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Optional

ALIGN = 64 * 1024  # split points on 64 KiB boundaries: friendlier to disks and caches
PIECES_PER_CONNECTION = 8  # at 16 connections and 1 GiB: 8 MiB pieces, a 128 MiB window left to hash at the end


@dataclass
class Segment:
    """Bytes [start, end) of the file; `done` of them, counted from `start`, are on disk."""

    start: int
    end: int
    done: int = 0
    busy: bool = False  # a worker owns it

    @property
    def pos(self) -> int:
        return self.start + self.done

    @property
    def remaining(self) -> int:
        return max(0, self.end - self.pos)

    @property
    def finished(self) -> bool:
        return self.pos >= self.end


class SegmentPlan:
    """The segments of one file, shared by the workers (every method takes the lock)."""

    def __init__(self, total: int, segments: list[Segment], min_split: int):
        self.total = total
        self.segments = sorted(segments, key=lambda s: s.start)
        self.min_split = max(min_split, 2 * ALIGN)
        self.lock = threading.Lock()

    @classmethod
    def split(cls, total: int, connections: int, min_split: int, done_prefix: int = 0) -> "SegmentPlan":
        """Equal pieces over [0, total), several per connection; `done_prefix` bytes are already on disk.

        Small pieces handed out in file order (as aria2's 1 MiB pieces) keep the finished prefix growing
        during the download, so the running hash keeps up instead of having the whole file left at the end.
        """
        count = max(1, min(connections * PIECES_PER_CONNECTION, total // max(min_split, 1) or 1))
        size = -(-total // count)
        size = -(-size // ALIGN) * ALIGN
        segments = []
        for start in range(0, total, size):
            end = min(start + size, total)
            done = min(max(done_prefix - start, 0), end - start)
            segments.append(Segment(start, end, done))
        return cls(total, segments, min_split)

    @classmethod
    def from_state(cls, total: int, rows: list, min_split: int) -> Optional["SegmentPlan"]:
        """A plan saved by `to_state`, or None when it does not describe [0, total) exactly."""
        try:
            segments = [Segment(int(a), int(b), int(c)) for a, b, c in rows]
        except (TypeError, ValueError):
            return None
        segments.sort(key=lambda s: s.start)
        edge = 0
        for seg in segments:
            if seg.start != edge or seg.end <= seg.start or not 0 <= seg.done <= seg.end - seg.start:
                return None
            edge = seg.end
        if edge != total:
            return None
        return cls(total, segments, min_split)

    def to_state(self) -> list:
        with self.lock:
            return [[s.start, s.end, s.done] for s in self.segments]

    # -- progress --------------------------------------------------------------------------------

    @property
    def downloaded(self) -> int:
        with self.lock:
            return sum(s.done for s in self.segments)

    @property
    def finished(self) -> bool:
        with self.lock:
            return all(s.finished for s in self.segments)

    def contiguous(self) -> int:
        """How many bytes from offset 0 are on disk without a gap."""
        with self.lock:
            edge = 0
            for seg in self.segments:
                if seg.start != edge:
                    break
                edge = seg.pos
                if not seg.finished:
                    break
            return edge

    def first_gap(self) -> int:
        """The first byte not on disk (where a resumed download's first request starts)."""
        with self.lock:
            gaps = [s.pos for s in self.segments if not s.finished]
            return min(gaps) if gaps else self.total

    def advance(self, seg: Segment, nbytes: int) -> int:
        """Record `nbytes` written at `seg.pos`; returns how many count (the end may have moved meanwhile)."""
        with self.lock:
            counted = max(0, min(nbytes, seg.end - seg.pos))
            seg.done += counted
            return counted

    def end_of(self, seg: Segment) -> int:
        with self.lock:
            return seg.end

    # -- assigning work ----------------------------------------------------------------------------

    def claim(self, containing: Optional[int] = None) -> Optional[Segment]:
        """An idle unfinished segment (the one holding byte `containing` if given), else half of the busiest one."""
        with self.lock:
            idle = [s for s in self.segments if not s.busy and not s.finished]
            if containing is not None:
                idle = [s for s in idle if s.pos <= containing < s.end] or idle
            if idle:
                seg = idle[0]
                seg.busy = True
                return seg
            return self._steal()

    def _steal(self) -> Optional[Segment]:
        victim = max((s for s in self.segments if s.busy and not s.finished), key=lambda s: s.remaining, default=None)
        if victim is None or victim.remaining < 2 * self.min_split:
            return None
        middle = victim.pos + victim.remaining // 2
        middle -= middle % ALIGN
        if middle <= victim.pos or middle >= victim.end:
            return None
        stolen = Segment(middle, victim.end, 0, busy=True)
        victim.end = middle
        self.segments.append(stolen)
        self.segments.sort(key=lambda s: s.start)
        return stolen

    def release(self, seg: Segment) -> None:
        with self.lock:
            seg.busy = False


class PrefixHasher:
    """sha256 of a file's finished prefix, fed from disk by a background thread as the prefix grows.

    Reading back what was just written hits the page cache, so this costs CPU only, in parallel with
    the network; at the end just the last stretch remains to hash.
    """

    def __init__(self, path: os.PathLike | str, start_digest=None, start_at: int = 0, chunk: int = 4 << 20):
        self._fd = os.open(path, os.O_RDONLY)
        self._digest = start_digest or hashlib.sha256()
        self._hashed = start_at
        self._target = start_at
        self._chunk = chunk
        self._cond = threading.Condition()
        self._closing = False
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="colab_sd-hash", daemon=True)
        self._thread.start()

    def advance_to(self, offset: int) -> None:
        with self._cond:
            if offset > self._target:
                self._target = offset
                self._cond.notify()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._hashed >= self._target and not self._closing:
                        self._cond.wait()
                    if self._hashed >= self._target and self._closing:
                        return
                    target = self._target
                while self._hashed < target:
                    data = os.pread(self._fd, min(self._chunk, target - self._hashed), self._hashed)
                    if not data:
                        raise OSError(f"the partial file ended at {self._hashed} bytes while hashing")
                    self._digest.update(data)
                    self._hashed += len(data)
        except BaseException as err:  # reported by finish()
            self._error = err

    def finish(self, total: int) -> str:
        """Hash up to `total` and return the hex digest."""
        self.advance_to(total)
        self.close()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        try:
            os.close(self._fd)
        except OSError:
            pass
