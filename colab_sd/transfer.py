"""The byte mover: one remote file to one verified file on disk, or nothing under its final name.

    GET (no HEAD) → follow redirects ourselves (auth stays on the origin, over https) → name from
    the first response, kept in the state → lock → `<name>.part` + `<name>.part.json` → stream with
    retries and Range/If-Range resume → size and sha256 checks → `place` under the final name.

The pieces: `partfile` (the .part and its state, and which crash leaves what), `receive` (one
response's body: one stream or segments), `place` (verify, already-there, never replace another
file), `http` (one request and what an answer means). This module is the attempt loop and the
name decision.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from . import names
from .errors import ColabSDError, DownloadCancelled, DownloadError, InputError
from .events import Info, Listener, Meter, guard
from .http import PROGRESS_CREDIT, Retryable, backoff, new_session, open_stream
from .lock import FileLock
from .hashing import file_sha256
from .partfile import PartState, Target, name_in_progress, trusted_state
from .place import already_there
from .remote import FetchResult, RemoteFile
from .tokens import redact, redact_url, remember_secret

log = logging.getLogger("colab_sd.transfer")

AUTO_CONNECTIONS = 16  # what Colab users reach for with aria2c -x16; CDNs cap each connection, not the sum
MAX_CONNECTIONS = 64

__all__ = ["TransferOptions", "fetch", "file_sha256", "MAX_CONNECTIONS", "AUTO_CONNECTIONS"]


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class TransferOptions:
    """How hard and how wide to try. The defaults suit a Colab VM talking to a CDN.

    The lowest-speed rule (as curl's --speed-limit / --speed-time): fewer than `low_speed_limit`
    bytes/s over `low_speed_time` seconds is a stall; the environment variables
    COLAB_SD_LOW_SPEED_LIMIT and COLAB_SD_LOW_SPEED_TIME change the defaults.
    """

    connections: Optional[int] = None  # parallel connections per file; None = automatic
    stall_timeout: float = 30.0  # seconds without a byte before the connection counts as stalled
    connect_timeout: float = 15.0
    retries: int = 8  # attempts after the first, per file (resumed each time); progress earns them back
    backoff_base: float = 0.5
    backoff_cap: float = 30.0  # also the most a Retry-After may make us wait
    chunk_size: int = 1 << 20
    verify: bool = True  # hash while downloading; check sha256 when one is known
    segment_min: int = 4 << 20  # no connection gets less than this much of a file
    fsync: bool = True  # flush to disk before the rename, so a crash never leaves a short final file
    low_speed_limit: float = field(default_factory=lambda: _env_float("COLAB_SD_LOW_SPEED_LIMIT", 1024.0))
    low_speed_time: float = field(default_factory=lambda: _env_float("COLAB_SD_LOW_SPEED_TIME", 30.0))

    def replace(self, **changes) -> "TransferOptions":
        return dataclasses.replace(self, **changes)

    def connections_for(self, total: Optional[int]) -> int:
        """How many connections a file of `total` bytes gets: never more than segment_min apiece."""
        if total is None or total <= 0:
            return 1
        wanted = self.connections or AUTO_CONNECTIONS
        return max(1, min(wanted, total // max(self.segment_min, 1)))


class Again(Exception):
    """Look again from the start without counting an attempt (another process just finished this file)."""


def fetch(remote: RemoteFile, dest_dir: os.PathLike | str, *, name: Optional[str] = None,
          on_event: Optional[Listener] = None, cancel: Optional[threading.Event] = None,
          options: Optional[TransferOptions] = None, job: Optional[str] = None) -> FetchResult:
    """Download `remote` into `dest_dir` and return where it landed.

    `name` (the user's) wins over the server's name. An existing file of that name is never replaced
    by different bytes: the new file gets a distinct name (`x-2.safetensors`) and an Info event says
    so. Raises ColabSDError subclasses only; on any failure nothing new is under a final name and a
    resumable `.part` is kept where that makes sense.
    """
    options = options or TransferOptions()
    if remote.fetcher is not None:
        return remote.fetcher(remote, Path(dest_dir), name=name, on_event=on_event, cancel=cancel, options=options,
                              job=job)
    scheme = urlsplit(remote.url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"cannot download {remote.shown_url!r}: only http(s) URLs are supported")
    return _Download(remote, Path(dest_dir), name, guard(on_event), cancel, options, job or remote.shown_url).run()


class _Download:
    """One file's download: the attempt loop and the decisions that span attempts (the name, the budget)."""

    def __init__(self, remote: RemoteFile, dest_dir: Path, name: Optional[str], emit: Listener,
                 cancel: Optional[threading.Event], options: TransferOptions, job: str):
        self.remote, self.dest_dir, self.emit, self.cancel, self.options, self.job = \
            remote, dest_dir, emit, cancel, options, job
        self.origin = redact_url(remote.url)  # which link a .part belongs to (never a credential)
        self.name = names.user_name(name) if name else None  # decided once, then never re-derived
        self.expected_sha = (remote.sha256 or "").strip().lower() or None
        if self.expected_sha and not re.fullmatch(r"[0-9a-f]{64}", self.expected_sha):
            raise InputError(f"{remote.sha256!r} is not a sha256: give 64 hex characters")
        for value in remote.headers.values():  # credentials we send must never come back in a message
            remember_secret(value.split()[-1] if value else value)
        self.session = new_session()
        self.meter: Optional[Meter] = None
        self.single_only = False  # set when the server proved that ranges cannot be trusted
        self.reached = 0  # the most bytes the .part has held: a failed attempt that raised it earns a free retry

    def run(self) -> FetchResult:
        try:
            self.dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DownloadError(f"cannot create the folder {self.dest_dir}: {err.strerror or err}") from None
        self.name = self.name or name_in_progress(self.dest_dir, self.origin)
        known = self.name or names.sanitize(self.remote.filename or "") or None
        if known and self.expected_sha:  # a known hash proves the file is there without asking the server
            skipped = already_there(self.dest_dir / known, self.expected_sha, self.emit, self.job)
            if skipped:
                return skipped
        self.emit(Info(f"downloading {self.job}", job=self.job))
        try:
            return self._attempts()
        finally:
            self.session.close()

    def _attempts(self) -> FetchResult:
        attempt = 0
        while True:
            self._check_cancel()
            before = self.reached
            try:
                return self._attempt()
            except Again:
                continue
            except Retryable as err:
                if err.progressed is not False and self.reached - before >= PROGRESS_CREDIT:
                    attempt = 0  # this one moved the file on: it does not count against the budget
                attempt += 1
                allowed = min(self.options.retries + 1, err.attempts or self.options.retries + 1)
                if attempt >= allowed:
                    kept = self.name is not None and Target(self.dest_dir / self.name).part.exists()
                    raise DownloadError(f"{err.reason}; gave up after {attempt} attempts" + (
                        " (the partial file is kept: run again to resume)" if kept else "")) from None
                wait = backoff(attempt, self.options, err.wait)
                self.emit(Info(f"{err.reason}; retrying in {wait:.1f}s (attempt {attempt + 1} of {allowed})",
                               job=self.job))
                log.info("retry %s: %s", self.job, err.reason)
                self._sleep(wait)
            except (ColabSDError, KeyboardInterrupt):
                raise
            except OSError as err:  # a local file problem (permissions, a folder where a file should be)
                raise DownloadError(f"cannot write into {self.dest_dir}: {err.strerror or redact(err)}") from None

    def _attempt(self) -> FetchResult:
        """One GET: open, decide the name, lock, then stream into the `.part` from where it stands."""
        from .receive import receive

        target = Target(self.dest_dir / self.name) if self.name else None
        state = trusted_state(target, self.origin) if target else None
        resp = self._open(target, state)
        try:
            if target is None:  # the first response decides the name, once
                self.name = names.choose(resp.headers, resp.url, fallback=self.remote.filename,
                                         original_url=self.remote.url)
                target = Target(self.dest_dir / self.name)
                state = trusted_state(target, self.origin)
                if state is not None:  # that name's .part is ours from an earlier run: ask from where it stands
                    resp.close()
                    resp = self._open(target, state)
            with FileLock(target.lock, on_wait=lambda: self.emit(Info(
                    f"another download of {target.final.name} is running; waiting for it", job=self.job)),
                    cancel=self.cancel) as lock:
                if lock.waited:  # the other process finished or failed: everything we knew may be stale
                    raise Again()
                return receive(self, resp, target, state)
        finally:
            resp.close()

    def _open(self, target: Optional[Target], state: Optional[PartState]):
        offset = resume_offset(target, state, self.options.segment_min) if target else 0
        # Always ask for a range, even from byte 0: a 206 is how we learn that segments will work.
        headers = {"Range": f"bytes={offset}-"}
        if offset and state is not None and state.validator:
            headers["If-Range"] = state.validator
        return open_stream(self.session, self.remote, self.options, extra_headers=headers, emit=self.emit,
                           job=self.job)

    def new_state(self, **fields) -> PartState:
        return PartState(name=self.name, origin=self.origin, **fields)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("download cancelled; the partial file is kept and the next run resumes it")

    def _sleep(self, seconds: float) -> None:
        if self.cancel is not None:
            if self.cancel.wait(seconds):
                self._check_cancel()
        else:
            time.sleep(seconds)


def resume_offset(target: Target, state: Optional[PartState], segment_min: int) -> int:
    """The first byte still missing from a trusted `.part` (0 without one)."""
    from .segments import SegmentPlan

    if state is None:
        return 0
    if state.mode == "single":
        return target.part.stat().st_size
    plan = SegmentPlan.from_state(state.total or 0, state.segments, segment_min)
    return plan.first_gap() if plan is not None else 0  # trusted_state checked the rows
