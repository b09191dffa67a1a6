"""The workers of a segmented download: several connections fill one preallocated `.part`.

`SegmentRunner` opens the ranges of a `segments.SegmentPlan` (each retried on its own, an expired
signed URL re-resolved) and refuses any answer of another version of the file than the one the
download started with. Split from `segments` (the plan and the prefix hasher) so each module has one job.
"""
from __future__ import annotations

import os
import threading
from typing import Optional
from urllib.parse import urlsplit

from .errors import DownloadCancelled
from .events import Info
from .http import (PROGRESS_CREDIT, Changed, Retryable, SpeedRule, backoff, check_same_version, may_send_credentials,
                   new_session, open_stream, parse_content_range, raise_for_status, short)
from .segments import Segment, SegmentPlan

WRONG_RANGES_TOLERATED = 3  # a glitch is retried; a pattern means the ranges cannot be trusted


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
