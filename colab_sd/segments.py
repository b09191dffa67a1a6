"""Segmented downloads: several connections fill one preallocated `.part`, each over its own byte range.

CDNs cap each connection, so one file over N ranges approaches the line speed (what `aria2c -x16`
does). The pieces:

- `SegmentPlan`: which byte ranges exist, how far each got, who works on which; idle workers split
  the largest remaining range (work stealing), and the plan is saved in the `.part.json` state so
  another process resumes without refetching finished ranges.
- `PrefixHasher`: sha256 of the contiguous finished prefix, computed while the download runs, so
  verification costs almost nothing at the end.

`SegmentRunner` opens the ranges (each retried on its own, an expired signed URL re-resolved) and
refuses any answer of another version of the file than the one the download started with.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from .errors import DownloadCancelled
from .events import Info
from .http import (PROGRESS_CREDIT, Changed, Retryable, SpeedRule, backoff, check_same_version, may_send_credentials,
                   new_session, open_stream, parse_content_range, raise_for_status, short)

ALIGN = 64 * 1024  # split points on 64 KiB boundaries: friendlier to disks and caches
PIECES_PER_CONNECTION = 8  # at 16 connections and 1 GiB: 8 MiB pieces, a 128 MiB window left to hash at the end
WRONG_RANGES_TOLERATED = 3  # a glitch is retried; a pattern means the ranges cannot be trusted


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


# ---------------------------------------------------------------------------------------------- the workers


class NoRanges(Exception):
    """The server stopped honouring Range (a 200 to a range request): only one stream can be trusted now."""


class SegmentRunner:
    """Fill the segments of `plan` over up to `connections` connections into the open file `fd`.

    Each worker claims a segment, streams its range, and on a failure retries that segment alone
    from where it stands. A resolved (signed) URL that stops working is re-resolved through the
    origin once. The first response of the download (already open, at `first_offset`) becomes the
    first worker's stream, so no request is wasted.
    """

    def __init__(self, *, plan: SegmentPlan, fd: int, remote, url: str, validator: Optional[str], options,
                 on_bytes, cancel: Optional[threading.Event], emit, job: Optional[str]):
        self.plan = plan
        self.fd = fd
        self.remote = remote
        self.url = url
        self.validator = validator
        self.options = options
        self.on_bytes = on_bytes  # called (from workers) after every write
        self.cancel = cancel
        self.emit = emit
        self.job = job
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._running = 0
        self._all_done = threading.Event()
        self._wrong_ranges = 0

    # -- the pool ------------------------------------------------------------------------------

    def run(self, connections: int, first_resp, first_head: bytes, first_offset: int, save_state) -> None:
        """Run the workers until the plan is finished; raise the first failure (state saved either way)."""
        threads = [threading.Thread(target=self._worker, args=((first_resp, first_head, first_offset),),
                                    name="colab_sd-seg-0", daemon=True)]
        threads += [threading.Thread(target=self._worker, args=(None,), name=f"colab_sd-seg-{i}", daemon=True)
                    for i in range(1, connections)]
        self._running = len(threads)
        for t in threads:
            t.start()
        try:
            while not self._all_done.wait(0.5):  # wakes at least twice a second to save the state
                if self.cancel is not None and self.cancel.is_set():
                    self.stop.set()
                save_state()
        except BaseException:  # KeyboardInterrupt lands on this (main) thread: stop the workers first
            self.stop.set()
            for t in threads:
                t.join()
            raise
        finally:
            save_state()
        if self.error is not None:
            raise self.error
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("download cancelled; the partial file is kept and the next run resumes it")
        if not self.plan.finished:
            raise Retryable("some segments did not finish")

    def _fail(self, err: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = err
        self.stop.set()

    def _worker(self, first) -> None:
        session = new_session()
        try:
            if first is not None:
                resp, head, offset = first
                seg = self.plan.claim(containing=offset)
                if seg is not None:
                    try:
                        if seg.pos == offset:
                            self._fill(session, seg, resp, head)
                        else:
                            resp.close()
                            self._fill(session, seg)
                    finally:
                        self.plan.release(seg)
                else:
                    resp.close()
            while not self.stop.is_set():
                seg = self.plan.claim()
                if seg is None:
                    return
                try:
                    self._fill(session, seg)
                finally:
                    self.plan.release(seg)
        except BaseException as err:
            self._fail(err)
        finally:
            session.close()
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._all_done.set()

    # -- one segment ------------------------------------------------------------------------------

    def _fill(self, session, seg: Segment, resp=None, head: bytes = b"") -> None:
        """Stream `seg` to its end, retrying on its own; a persistent failure stops the whole pool.

        A failure after real progress (PROGRESS_CREDIT bytes) does not count against the retries.
        """
        failures = 0
        while not seg.finished and not self.stop.is_set():
            before = seg.done
            try:
                if resp is None:
                    resp = self._open(session, seg)
                self._pump(seg, resp, head)
            except Changed:
                raise
            except Retryable as err:
                if err.progressed is not False and seg.done - before >= PROGRESS_CREDIT:
                    failures = 0
                failures += 1
                if failures > self.options.retries:
                    raise
                wait = backoff(failures, self.options, err.wait)
                self.emit(Info(f"one connection: {err.reason}; retrying its part in {wait:.1f}s", job=self.job))
                if self.stop.wait(wait):
                    return
            finally:
                if resp is not None:
                    resp.close()
                resp, head = None, b""

    def _open(self, session, seg: Segment):
        end = self.plan.end_of(seg) - 1
        headers = {"Range": f"bytes={seg.pos}-{end}"}
        if self.validator:
            headers["If-Range"] = self.validator
        url = self.url
        sent = dict(headers)
        if may_send_credentials(url, self.remote.url):
            sent.update(self.remote.headers)
        try:
            resp = session.get(url, headers=sent, stream=True, allow_redirects=False,
                               timeout=(self.options.connect_timeout, self.options.stall_timeout))
        except Exception as err:
            raise Retryable(f"cannot reach {urlsplit(url).hostname}: {short(err)}") from None
        if url != self.remote.url and (resp.is_redirect or resp.status_code in (401, 403, 404, 410)):
            # A signed URL expired (or moved): ask the origin again for a fresh one.
            resp.close()
            resp = open_stream(session, self.remote, self.options, extra_headers=headers, emit=self.emit,
                                    job=self.job)
            with self._lock:
                self.url = resp.url
            self.emit(Info("the download link expired; got a fresh one", job=self.job))
        if resp.status_code == 206:
            start, _end, total = parse_content_range(resp.headers.get("Content-Range"))
            try:
                check_same_version(resp.headers, self.validator, self.plan.total, total)
            except Changed:
                resp.close()
                raise
            if start != seg.pos or (total is not None and total != self.plan.total):
                resp.close()
                with self._lock:
                    self._wrong_ranges += 1
                    persistent = self._wrong_ranges >= WRONG_RANGES_TOLERATED
                reason = f"the server sent the wrong range (asked for byte {seg.pos}, got {start} of {total})"
                if persistent:  # a server that keeps answering ranges wrongly is only trusted with one plain stream
                    raise NoRanges(f"{reason} again")
                raise Retryable(reason)
            return resp
        if resp.status_code == 200:
            resp.close()
            raise NoRanges("the server answered a range request with the whole file")
        if resp.status_code == 416:
            resp.close()
            raise Retryable("the server refused a range (416)")
        raise_for_status(self.remote, resp, resp.url)
        raise Retryable(f"unexpected answer {resp.status_code}")  # pragma: no cover - raise_for_status raised

    def _pump(self, seg: Segment, resp, head: bytes) -> None:
        rule = SpeedRule(self.options.low_speed_limit, self.options.low_speed_time)
        read1 = resp.raw.read1
        data = head
        while True:
            if data:
                end = self.plan.end_of(seg)
                take = data[: max(0, end - seg.pos)]
                if take:
                    _pwrite_all(self.fd, take, seg.pos)
                    self.plan.advance(seg, len(take))
                    self.on_bytes()
            if seg.finished or self.stop.is_set():
                return
            if self.cancel is not None and self.cancel.is_set():
                self.stop.set()
                return
            want = min(self.options.chunk_size, self.plan.end_of(seg) - seg.pos)
            if want <= 0:
                return
            try:  # read1: what has arrived, so that a trickle is seen by the speed rule instead of blocking
                data = read1(want, decode_content=False)
            except Exception as err:
                raise Retryable(f"connection lost: {short(err)}") from None
            if not data:
                raise Retryable("the connection closed early")
            rule.feed(len(data))


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
