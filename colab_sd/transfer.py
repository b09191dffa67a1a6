"""The byte mover: one remote file to one verified file on disk, or nothing under its final name.

    GET (no HEAD) → follow redirects ourselves (auth stays on the origin host) → name from the
    response → lock → `<name>.part` (+ `<name>.part.json` state) → stream with retries and
    Range/If-Range resume → size and sha256 checks → os.replace to the final name.

The decisions (what a response means, how long to wait) are small pure functions so that they
can be read and tested on their own; `fetch()` is the loop that applies them.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import requests

from . import names
from .errors import DiskFullError, DownloadCancelled, DownloadError, ErrorPageError, InputError, IntegrityError
from .events import Completed, Info, Listener, Meter, guard
from .http import (Retryable, backoff, expects_binary, explained, human_size, looks_like_page, new_session,
                   open_stream, page_excerpt, parse_content_range, short, strong_validator)
from .lock import FileLock
from .remote import FetchResult, RemoteFile
from .segments import NoRanges, PrefixHasher, SegmentPlan, SegmentRunner
from .tokens import remember_secret

log = logging.getLogger("colab_sd.transfer")

PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.json"
LOCK_SUFFIX = ".part.lock"
AUTO_CONNECTIONS = 16  # what Colab users reach for with aria2c -x16; CDNs cap each connection, not the sum
MAX_CONNECTIONS = 64
FLUSH_EVERY = 64 << 20  # bytes between write-backs while downloading (the page cache would hold them all)


@dataclass(frozen=True)
class TransferOptions:
    """How hard and how wide to try. The defaults suit a Colab VM talking to a CDN."""

    connections: Optional[int] = None  # parallel connections per file; None = automatic
    stall_timeout: float = 30.0  # seconds without a byte before the connection counts as stalled
    connect_timeout: float = 15.0
    retries: int = 8  # attempts after the first, per file (resumed each time)
    backoff_base: float = 0.5
    backoff_cap: float = 30.0  # also the most a Retry-After may make us wait
    chunk_size: int = 1 << 20
    verify: bool = True  # hash while downloading; check sha256 when one is known
    segment_min: int = 4 << 20  # no connection gets less than this much of a file
    fsync: bool = True  # flush to disk before the rename, so a crash never leaves a short final file

    def replace(self, **changes) -> "TransferOptions":
        return dataclasses.replace(self, **changes)

    def connections_for(self, total: Optional[int]) -> int:
        """How many connections a file of `total` bytes gets: never more than segment_min apiece."""
        if total is None or total <= 0:
            return 1
        wanted = self.connections or AUTO_CONNECTIONS
        return max(1, min(wanted, total // max(self.segment_min, 1)))


class _Again(Exception):
    """Look again from the start without counting an attempt (another process just finished this file)."""


# ---------------------------------------------------------------------------------------------- the .part and its state


@dataclass
class PartState:
    """What we know about a `.part`: enough to resume it in another process."""

    validator: Optional[str] = None  # ETag or Last-Modified, for If-Range
    total: Optional[int] = None
    segments: Optional[list] = None  # [[start, end, done], ...] when several connections fill a preallocated .part

    @classmethod
    def load(cls, path: Path) -> "PartState":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(validator=data.get("validator"), total=data.get("total"), segments=data.get("segments"))
        except (OSError, ValueError, AttributeError):
            return cls()

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")
        os.replace(tmp, path)


@dataclass
class _Target:
    """The final path and its temporary companions, all in the same folder (same filesystem: atomic rename)."""

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


def file_sha256(path: Path, limit: Optional[int] = None, chunk: int = 1 << 20) -> "hashlib._Hash":
    """A sha256 object fed with the first `limit` bytes of `path` (all when None)."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            data = fh.read(chunk if remaining is None else min(chunk, remaining))
            if not data:
                break
            digest.update(data)
            if remaining is not None:
                remaining -= len(data)
    return digest


# ---------------------------------------------------------------------------------------------- fetch


def fetch(remote: RemoteFile, dest_dir: os.PathLike | str, *, name: Optional[str] = None,
          on_event: Optional[Listener] = None, cancel: Optional[threading.Event] = None,
          options: Optional[TransferOptions] = None, job: Optional[str] = None) -> FetchResult:
    """Download `remote` into `dest_dir` and return where it landed.

    `name` (the user's) wins over the server's name. Raises ColabSDError subclasses; on any
    failure the final name is untouched and a resumable `.part` is kept where that makes sense.
    """
    if remote.fetcher is not None:
        return remote.fetcher(remote, Path(dest_dir), name=name, on_event=on_event, cancel=cancel,
                              options=options or TransferOptions())
    scheme = urlsplit(remote.url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"cannot download {remote.shown_url!r}: only http(s) URLs are supported")
    return _Download(remote, Path(dest_dir), name, guard(on_event), cancel, options or TransferOptions(),
                     job or remote.shown_url).run()


class _Download:
    """One file's download; holds the per-file state that the attempt loop shares."""

    def __init__(self, remote: RemoteFile, dest_dir: Path, name: Optional[str], emit: Listener,
                 cancel: Optional[threading.Event], options: TransferOptions, job: str):
        self.remote = remote
        self.dest_dir = dest_dir
        self.user_name = names.user_name(name) if name else None
        self.emit = emit
        self.cancel = cancel
        self.options = options
        self.job = job
        self.expected_sha = (remote.sha256 or "").strip().lower() or None
        if self.expected_sha and not re.fullmatch(r"[0-9a-f]{64}", self.expected_sha):
            raise InputError(f"{remote.sha256!r} is not a sha256: give 64 hex characters")
        for value in remote.headers.values():  # credentials we send must never come back in a message
            remember_secret(value.split()[-1] if value else value)
        self.session = new_session()
        self.meter: Optional[Meter] = None
        self.single_only = False  # set when the server proved that ranges cannot be trusted
        self.learned_name: Optional[str] = None  # the name a response gave; later attempts start with it

    # -- the attempt loop ---------------------------------------------------------------------------

    def run(self) -> FetchResult:
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        hinted = self.user_name or names.sanitize(self.remote.filename or names.guess_from_url(self.remote.url) or "")
        hinted = hinted or None
        if hinted and self.expected_sha:  # a known hash can prove the file is there without asking the server
            skipped = self._already_there(_Target(self.dest_dir / hinted), size=None)
            if skipped:
                return skipped
        attempt = 0
        self.emit(Info(f"downloading {self.job}", job=self.job))
        try:
            while True:
                self._check_cancel()
                try:
                    return self._attempt(hinted)
                except _Again:
                    hinted = self.learned_name or hinted
                    continue
                except Retryable as err:
                    hinted = self.learned_name or hinted
                    attempt += 1
                    allowed = min(self.options.retries + 1, err.attempts or self.options.retries + 1)
                    if attempt >= allowed:
                        kept = hinted is not None and _Target(self.dest_dir / hinted).part.exists()
                        raise DownloadError(f"{err.reason}; gave up after {attempt} attempts" + (
                            " (the partial file is kept: run again to resume)" if kept else "")) from None
                    wait = backoff(attempt, self.options, err.wait)
                    self.emit(Info(f"{err.reason}; retrying in {wait:.1f}s (attempt {attempt + 1} of {allowed})",
                                   job=self.job))
                    log.info("retry %s: %s", self.job, err.reason)
                    self._sleep(wait)
        finally:
            self.session.close()

    def _attempt(self, hinted: Optional[str]) -> FetchResult:
        """One GET: open, decide the name, lock, then stream into the `.part` from where it stands."""
        offset, state, target = 0, PartState(), None
        if hinted:
            target = _Target(self.dest_dir / hinted)
            offset, state = self._resume_point(target)
        extra = self._range_headers(offset, state)
        resp = open_stream(self.session, self.remote, self.options, extra_headers=extra, emit=self.emit, job=self.job)
        try:
            real = self.user_name or names.choose(resp.headers, resp.url, fallback=self.remote.filename,
                                                  original_url=self.remote.url)
            self.learned_name = real
            if target is None or real != target.final.name:
                asked = offset
                target = _Target(self.dest_dir / real)
                offset, state = self._resume_point(target)
                if offset != asked:  # the real name only came with this response: ask again from where its .part stands
                    resp.close()
                    resp = open_stream(self.session, self.remote, self.options, emit=self.emit, job=self.job,
                                       extra_headers=self._range_headers(offset, state))
            with FileLock(target.lock, on_wait=lambda: self.emit(Info(
                    f"another download of {target.final.name} is running; waiting for it", job=self.job)),
                    cancel=self.cancel) as lock:
                if lock.waited:  # the other process finished or failed: everything we knew may be stale
                    raise _Again()
                return self._receive(resp, target, offset, state)
        finally:
            resp.close()

    # -- resume bookkeeping -----------------------------------------------------------------------

    def _resume_point(self, target: _Target) -> tuple[int, PartState]:
        """The first byte still missing from the target's `.part`, and what its state file says."""
        if not target.part.exists():
            target.state.unlink(missing_ok=True)
            return 0, PartState()
        if not target.state.exists():
            # Every .part we write has its state saved first; one without it (a crash in between, or someone
            # else's file) may be a preallocated file full of holes: never trust it.
            target.discard()
            return 0, PartState()
        state = PartState.load(target.state)
        size = target.part.stat().st_size
        if state.segments is None:
            return size, state
        plan = SegmentPlan.from_state(state.total or 0, state.segments, self.options.segment_min)
        if plan is None or size != state.total:
            target.discard()  # a segmented .part we cannot account for byte by byte is worthless
            return 0, PartState()
        return plan.first_gap(), state

    @staticmethod
    def _range_headers(offset: int, state: PartState) -> dict[str, str]:
        # Always ask for a range, even from byte 0: a 206 is how we learn that segments will work.
        headers = {"Range": f"bytes={offset}-"}
        if offset and state.validator:
            headers["If-Range"] = state.validator
        return headers

    # -- receiving the body -----------------------------------------------------------------------

    def _receive(self, resp: requests.Response, target: _Target, offset: int, state: PartState) -> FetchResult:
        status = resp.status_code
        if status == 416:
            return self._on_416(resp, target, offset, state)
        validator = strong_validator(resp.headers)
        if status == 206:
            start, _end, total = parse_content_range(resp.headers.get("Content-Range"))
            if start != offset or (state.total and total and total != state.total):
                target.discard()
                raise Retryable("the server resumed at the wrong place; starting over", wait=0)
            if offset:
                self.emit(Info(f"resuming {target.final.name} at {human_size(offset)}", job=self.job))
                log.info("resume %s at %d", self.job, offset)
        else:  # 200: a full body
            if offset:
                self.emit(Info(f"the server does not resume this file; starting {target.final.name} over", job=self.job))
                log.info("range ignored for %s; restarting", self.job)
            offset = 0
            total = _int(resp.headers.get("Content-Length"))
        if self._matches_existing(target, total):
            return self._already_there(target, size=total)  # type: ignore[return-value]
        head = self._first_bytes(resp)
        if expects_binary(target.final.name) and looks_like_page(resp.headers.get("Content-Type"), head):
            body = head + (resp.raw.read(65536 - len(head), decode_content=True) or b"")
            raise explained(self.remote, status, resp.headers, body, resp.url) or ErrorPageError(
                f"{urlsplit(resp.url).hostname} sent a web page instead of {target.final.name}: "
                f"\"{page_excerpt(body)}\"; the link may need a token or may have expired")
        self._check_space(target, total, offset)
        connections = 1 if (status != 206 or self.single_only) else self.options.connections_for(total)
        if connections > 1:
            return self._receive_segmented(resp, head, target, offset, total, validator, state, connections)
        state = PartState(validator=validator, total=total)
        state.save(target.state)
        digest = self._prefix_digest(target, offset)
        written = self._write(resp, target, offset, total, head, digest)
        return self._finish(target, written, total, digest.hexdigest() if digest is not None else None)

    def _receive_segmented(self, resp: requests.Response, head: bytes, target: _Target, offset: int, total: int,
                           validator: Optional[str], state: PartState, connections: int) -> FetchResult:
        """Fill a preallocated `.part` over several connections, hashing the finished prefix as it grows."""
        plan = None
        if state.segments is not None and state.total == total:
            plan = SegmentPlan.from_state(total, state.segments, self.options.segment_min)
        if plan is None:  # fresh, or a single-stream .part whose first `offset` bytes count as done
            plan = SegmentPlan.split(total, connections, self.options.segment_min, done_prefix=offset)
        if offset:
            self.emit(Info(f"resuming {target.final.name} at {human_size(plan.downloaded)}", job=self.job))
        self.emit(Info(f"{target.final.name}: {human_size(total)} over {connections} connections", job=self.job))

        flushed = [plan.downloaded]

        def save_state() -> None:  # twice a second, from the supervising thread
            if self.options.fsync and plan.downloaded - flushed[0] >= FLUSH_EVERY:
                flushed[0] = plan.downloaded
                os.fdatasync(fd)  # write back as we go, so the final fsync has little left to do
            PartState(validator=validator, total=total, segments=plan.to_state()).save(target.state)

        fd = os.open(target.part, os.O_RDWR | os.O_CREAT, 0o644)
        hasher = None
        try:
            self._disk_guard(lambda: os.ftruncate(fd, total), target)  # sparse: no time spent writing zeros
            save_state()
            hasher = PrefixHasher(target.part) if self.options.verify else None
            self.meter = self.meter or Meter()
            progress_lock = threading.Lock()

            def on_bytes() -> None:
                with progress_lock:
                    if hasher is not None:
                        hasher.advance_to(plan.contiguous())
                    self.emit(self.meter.progress(plan.downloaded, total, job=self.job, base=offset))

            runner = SegmentRunner(plan=plan, fd=fd, remote=self.remote, url=resp.url, validator=validator,
                                   options=self.options, on_bytes=on_bytes, cancel=self.cancel, emit=self.emit,
                                   job=self.job)
            try:
                self._disk_guard(lambda: runner.run(connections, resp, head, offset, save_state), target)
            except NoRanges as err:
                self.single_only = True
                target.discard()
                raise Retryable(f"{err}; starting over with one connection", wait=0)
            if self.options.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
            if hasher is not None and not plan.finished:
                hasher.close()
        sha = hasher.finish(total) if hasher is not None else None
        return self._finish(target, plan.downloaded, total, sha)

    def _disk_guard(self, action, target: _Target):
        """Run `action`, turning a full disk (or a file-size limit) into a DiskFullError that keeps the .part."""
        try:
            return action()
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise DiskFullError(f"no space left while writing {target.part.name} in {target.final.parent}: "
                                    "free some space (or choose another folder) and run again to resume") from None
            raise

    def _first_bytes(self, resp: requests.Response) -> bytes:
        try:
            return resp.raw.read(min(4096, self.options.chunk_size), decode_content=True) or b""
        except Exception as err:
            raise Retryable(f"connection lost: {short(err)}") from None

    def _on_416(self, resp: requests.Response, target: _Target, offset: int, state: PartState) -> FetchResult:
        _, _, total = parse_content_range(resp.headers.get("Content-Range"))
        total = total or state.total
        if offset and total is not None and offset == total:
            digest = self._prefix_digest(target, offset)
            return self._finish(target, offset, total, digest.hexdigest() if digest is not None else None)
        target.discard()  # the .part is longer than the file, or unknowable: start clean
        raise Retryable("the partial file does not fit the server's file; starting over", wait=0)

    def _prefix_digest(self, target: _Target, offset: int):
        if not self.options.verify:
            return None
        if offset:
            self.emit(Info(f"checking the {human_size(offset)} already downloaded", job=self.job))
            return file_sha256(target.part, offset)
        return hashlib.sha256()

    def _write(self, resp: requests.Response, target: _Target, offset: int, total: Optional[int], head: bytes,
               digest) -> int:
        done = offset
        self.meter = self.meter or Meter()
        mode = "r+b" if offset else "wb"
        if offset == 0:
            target.part.touch()
        with open(target.part, mode) as fh:
            fh.seek(offset)
            fh.truncate()
            try:
                chunk = head
                stream = resp.raw
                flushed = done
                while True:
                    if chunk:
                        self._write_chunk(fh, chunk, target)
                        if digest is not None:
                            digest.update(chunk)
                        done += len(chunk)
                        if self.options.fsync and done - flushed >= FLUSH_EVERY:
                            fh.flush()
                            os.fdatasync(fh.fileno())  # write back as we go: the final fsync stays short
                            flushed = done
                        self.emit(self.meter.progress(done, total, job=self.job, base=offset))
                    self._check_cancel()
                    if total is not None and done >= total:
                        break
                    # read1 returns what has arrived, so bytes before a dropped connection are kept
                    chunk = stream.read1(self.options.chunk_size)
                    if not chunk:
                        break
            except (requests.exceptions.RequestException, OSError, ValueError) as err:
                if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    raise
                if isinstance(err, (DiskFullError,)):
                    raise
                fh.flush()
                raise Retryable(f"connection lost at {human_size(done)}: {short(err)}") from None
            except Exception as err:  # urllib3's ProtocolError / ReadTimeoutError are not RequestExceptions here
                if type(err).__module__.startswith("urllib3"):
                    fh.flush()
                    raise Retryable(f"connection lost at {human_size(done)}: {short(err)}") from None
                raise
            if self.options.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if total is not None and done < total:
            raise Retryable(f"the connection closed early at {human_size(done)} of {human_size(total)}")
        return done

    def _write_chunk(self, fh, chunk: bytes, target: _Target) -> None:
        self._disk_guard(lambda: fh.write(chunk), target)

    def _finish(self, target: _Target, written: int, total: Optional[int], sha: Optional[str]) -> FetchResult:
        if total is not None and written != total:
            target.discard()
            raise IntegrityError(f"{target.final.name}: got {written} bytes but the server announced {total}; "
                                 "the damaged download was deleted, run again")
        if self.expected_sha and sha is not None and sha != self.expected_sha:
            target.discard()
            raise IntegrityError(f"{target.final.name}: sha256 mismatch (expected {self.expected_sha[:12]}…, "
                                 f"got {sha[:12]}…); the damaged download was deleted, run again")
        os.replace(target.part, target.final)
        target.state.unlink(missing_ok=True)
        log.info("saved %s (%d bytes) from %s", target.final, written, self.job)
        self.emit(Completed(path=str(target.final), bytes=written, sha256=sha, job=self.job))
        return FetchResult(path=target.final, bytes=written, sha256=sha)

    # -- already there? -----------------------------------------------------------------------------

    def _matches_existing(self, target: _Target, size: Optional[int]) -> bool:
        final = target.final
        if not final.is_file():
            return False
        if size is not None and final.stat().st_size != size:
            return False
        if self.expected_sha:  # the hash alone decides when we have one
            return file_sha256(final).hexdigest() == self.expected_sha
        return size is not None

    def _already_there(self, target: _Target, size: Optional[int]) -> Optional[FetchResult]:
        """A FetchResult for a final file that already matches (size, and hash when known), else None."""
        if not self._matches_existing(target, size):
            return None
        final = target.final
        nbytes = final.stat().st_size
        sha = self.expected_sha
        self.emit(Info(f"{final.name} is already there and matches; skipping", job=self.job))
        self.emit(Completed(path=str(final), bytes=nbytes, sha256=sha, skipped=True, job=self.job))
        return FetchResult(path=final, bytes=nbytes, sha256=sha, skipped=True)

    # -- small helpers ------------------------------------------------------------------------------

    def _check_space(self, target: _Target, total: Optional[int], offset: int) -> None:
        if total is None:
            return
        need = total - offset
        free = shutil.disk_usage(target.final.parent).free
        if need > free:
            raise DiskFullError(f"not enough free space in {target.final.parent} for {target.final.name}: "
                                f"need {human_size(need)}, have {human_size(free)}; free some space or choose another folder")

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("download cancelled; the partial file is kept and the next run resumes it")

    def _sleep(self, seconds: float) -> None:
        if self.cancel is not None:
            if self.cancel.wait(seconds):
                self._check_cancel()
        else:
            time.sleep(seconds)


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
