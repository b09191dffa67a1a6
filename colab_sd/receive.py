"""One response's body into the `.part`: over one stream, or over segments; then verify and place.

The order of writes is what makes every crash point safe (see `partfile`): a fresh `.part` is
emptied before its new state is saved; the state is saved before the first byte (one stream) or
before the file is preallocated (segments). A response of another version than the `.part`'s bytes
(`http.Changed`) deletes both and starts over, so two versions are never mixed.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
from typing import Optional
from urllib.parse import urlsplit

import requests

from .errors import ColabSDError, DiskFullError, DownloadError, ErrorPageError, IntegrityError
from .events import Completed, Info, Meter
from .http import (Changed, Retryable, SpeedRule, check_same_version, encoded, expects_binary, explained, human_size,
                   looks_like_page, page_excerpt, parse_content_range, read_upto, short, strong_validator)
from .hashing import file_sha256
from .partfile import PartState, Target
from .place import place, sha256_mismatch
from .remote import FetchResult
from .segment_runner import NoRanges, SegmentRunner
from .segments import PrefixHasher, SegmentPlan

log = logging.getLogger("colab_sd.transfer")

FLUSH_EVERY = 64 << 20  # bytes between write-backs while downloading (the page cache would hold them all)
_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def receive(dl, resp: requests.Response, target: Target, state: Optional[PartState]) -> FetchResult:
    """Turn the open response into the final file (or raise, keeping a resumable `.part`)."""
    from .transfer import resume_offset

    offset = resume_offset(target, state, dl.options.segment_min) if state else 0
    try:
        if resp.status_code == 416:
            return _on_416(dl, resp, target, state, offset)
        offset, total, validator, packed = _what_came(dl, resp, target, state, offset)
        rule = SpeedRule(dl.options.low_speed_limit, dl.options.low_speed_time)
        head = _first_bytes(resp, dl.options.chunk_size, packed, rule)
        _refuse_page(dl, resp, target, head, packed)
        _check_space(target, total, offset)
        if packed or resp.status_code != 206 or dl.single_only or dl.options.connections_for(total) == 1 \
                or not (validator or dl.expected_sha):
            # Without a version tag (ETag / Last-Modified) or a known sha256, ranges fetched over several
            # connections could come from two versions of a file that changes meanwhile, and nothing would
            # notice the mix: one stream is one version.
            return _single(dl, resp, head, target, offset, total, validator, packed)
        return _segmented(dl, resp, head, target, offset, total, validator, state)
    except Changed:
        target.discard()  # its bytes are of the old version
        raise


def _what_came(dl, resp, target: Target, state: Optional[PartState], offset: int):
    """(offset, total, validator, packed) for this answer; a resume of another version raises Changed."""
    packed = encoded(resp.headers)  # gzip although identity was asked: sizes and ranges are of packed bytes
    validator = strong_validator(resp.headers)
    if resp.status_code == 206 and not packed:
        start, _end, total = parse_content_range(resp.headers.get("Content-Range"))
        if start is None:  # a 206 that does not say which bytes it holds: no range of it can be trusted
            dl.single_only = True
            if offset:
                target.discard()
                raise Retryable("the server's partial answer does not say which bytes it holds; starting over",
                                wait=0, progressed=False)
            return 0, _int(resp.headers.get("Content-Length")), validator, packed  # bytes=0- asked: the whole file
        if state is not None and offset:
            check_same_version(resp.headers, state.validator, state.total, total)
            validator = validator or state.validator
        if start != offset:
            target.discard()
            raise Retryable("the server resumed at the wrong place; starting over", wait=0, progressed=False)
        if offset:
            dl.emit(Info(f"resuming {target.final.name} at {human_size(offset)}", job=dl.job))
            log.info("resume %s at %d", dl.job, offset)
        return offset, total, validator, packed
    if offset:
        dl.emit(Info(f"the server does not resume this file; starting {target.final.name} over", job=dl.job))
        log.info("range ignored for %s; restarting", dl.job)
    total = None if packed else _int(resp.headers.get("Content-Length"))
    return 0, total, validator, packed


def _first_bytes(resp: requests.Response, chunk_size: int, packed: bool, rule: SpeedRule) -> bytes:
    try:
        return read_upto(resp.raw, min(4096, chunk_size), rule, packed)
    except Retryable:
        raise
    except Exception as err:
        raise Retryable(f"connection lost: {short(err)}") from None


def _refuse_page(dl, resp, target: Target, head: bytes, packed: bool) -> None:
    if expects_binary(target.final.name) and looks_like_page(resp.headers.get("Content-Type"), head):
        try:
            body = head + read_upto(resp.raw, 65536 - len(head), SpeedRule(1024, 10), packed)
        except Exception:
            body = head
        raise explained(dl.remote, resp.status_code, resp.headers, body, resp.url) or ErrorPageError(
            f"{urlsplit(resp.url).hostname} sent a web page instead of {target.final.name}: "
            f"\"{page_excerpt(body)}\"; the link may need a token or may have expired")


def _check_space(target: Target, total: Optional[int], offset: int) -> None:
    if total is None:
        return
    need = total - offset
    free = shutil.disk_usage(target.final.parent).free
    if need > free:
        raise DiskFullError(f"not enough free space in {target.final.parent} for {target.final.name}: "
                            f"need {human_size(need)}, have {human_size(free)}; free some space or choose another folder")


def disk_guard(action, target: Target):
    """Run `action`, turning a full disk (or a file-size limit) into a DiskFullError that keeps the .part."""
    try:
        return action()
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise DiskFullError(f"no space left while writing {target.part.name} in {target.final.parent}: "
                                "free some space (or choose another folder) and run again to resume") from None
        raise


# ---------------------------------------------------------------------------------------------- one stream


def _single(dl, resp, head: bytes, target: Target, offset: int, total: Optional[int], validator: Optional[str],
            packed: bool) -> FetchResult:
    if offset == 0:
        target.discard()  # never let a new state describe an old .part's bytes
    if packed:
        target.state.unlink(missing_ok=True)  # packed bytes cannot be resumed by Range: no state, so no resume
    else:
        dl.new_state(mode="single", validator=validator, total=total).save(target.state)
    digest = _prefix_digest(dl, target, offset)
    written = _write(dl, resp, target, offset, total, head, digest, packed)
    return finish(dl, target, written, total, digest.hexdigest() if digest is not None else None)


def _prefix_digest(dl, target: Target, offset: int):
    if not dl.options.verify:
        return None
    if offset:
        dl.emit(Info(f"checking the {human_size(offset)} already downloaded", job=dl.job))
        return file_sha256(target.part, offset)
    return hashlib.sha256()


def _write(dl, resp, target: Target, offset: int, total: Optional[int], head: bytes, digest, packed: bool) -> int:
    """Append the body to the `.part` from `offset`; the hot loop: one read, one write, one hash update."""
    done = flushed = offset
    dl.meter = dl.meter or Meter()
    rule = SpeedRule(dl.options.low_speed_limit, dl.options.low_speed_time)
    with open(target.part, "r+b" if offset else "wb") as fh:
        fh.seek(offset)
        fh.truncate()
        chunk, read1 = head, resp.raw.read1
        try:
            while True:
                if chunk:
                    fh.write(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    done += len(chunk)
                    if dl.options.fsync and done - flushed >= FLUSH_EVERY:
                        fh.flush()
                        os.fdatasync(fh.fileno())  # write back as we go: the final fsync stays short
                        flushed = done
                    dl.emit(dl.meter.progress(done, total, job=dl.job, base=offset, name=dl.name))
                dl._check_cancel()
                if total is not None and done >= total:
                    break
                chunk = read1(dl.options.chunk_size, decode_content=packed)  # what has arrived: kept on a drop
                if not chunk:
                    break
                rule.feed(len(chunk))
        except Retryable:
            dl.reached = max(dl.reached, done)
            raise
        except ColabSDError:
            raise
        except Exception as err:  # requests', urllib3's and zlib's errors alike: the connection's fault
            if isinstance(err, OSError) and err.errno in _DISK_FULL:
                disk_guard(lambda: _reraise(err), target)
            if not type(err).__module__.startswith(("urllib3", "requests", "http", "zlib", "socket", "ssl")) \
                    and not isinstance(err, (OSError, ValueError)):
                raise
            dl.reached = max(dl.reached, done)
            raise Retryable(f"connection lost at {human_size(done)}: {short(err)}") from None
        if dl.options.fsync:
            fh.flush()
            os.fsync(fh.fileno())
    dl.reached = max(dl.reached, done)
    if total is not None and done < total:
        raise Retryable(f"the connection closed early at {human_size(done)} of {human_size(total)}")
    return done


def _on_416(dl, resp, target: Target, state: Optional[PartState], offset: int) -> FetchResult:
    _, _, total = parse_content_range(resp.headers.get("Content-Range"))
    if offset == 0:  # "bytes=0-" is unsatisfiable only for an empty file (RFC 9110 14.1.2): never retry that
        target.discard()
        target.part.touch()  # an empty config file is a file; an empty "model" is refused by finish
        return finish(dl, target, 0, 0, hashlib.sha256().hexdigest())
    if state is not None:
        check_same_version(resp.headers, state.validator, state.total, total)
        total = total if total is not None else state.total
        if offset and total is not None and offset == total:
            digest = _prefix_digest(dl, target, offset)
            return finish(dl, target, offset, total, digest.hexdigest() if digest is not None else None)
    target.discard()  # the .part is longer than the file, or unknowable: start clean
    raise Retryable("the partial file does not fit the server's file; starting over", wait=0, progressed=False)


# ---------------------------------------------------------------------------------------------- segments


def _segmented(dl, resp, head: bytes, target: Target, offset: int, total: int, validator: Optional[str],
               state: Optional[PartState]) -> FetchResult:
    """Fill a preallocated `.part` over several connections, hashing the finished prefix as it grows."""
    connections = dl.options.connections_for(total)
    plan = None
    if state is not None and state.mode == "segments" and state.total == total:
        plan = SegmentPlan.from_state(total, state.segments, dl.options.segment_min)
    if plan is None:  # fresh, or a one-stream .part whose first `offset` bytes count as done
        if offset == 0:
            target.discard()
        plan = SegmentPlan.split(total, connections, dl.options.segment_min, done_prefix=offset)
    if offset:
        dl.emit(Info(f"resuming {target.final.name} at {human_size(plan.downloaded)}", job=dl.job))
    dl.emit(Info(f"{target.final.name}: {human_size(total)} over {connections} connections", job=dl.job))
    keeper = _StateKeeper(dl, target, plan, validator)
    keeper.save()  # before the preallocation: a crash right after it finds a state that claims nothing new
    fd = os.open(target.part, os.O_RDWR | os.O_CREAT, 0o644)
    hasher = None
    try:
        keeper.fd = fd
        disk_guard(lambda: os.ftruncate(fd, total), target)  # sparse: no time spent writing zeros
        hasher = PrefixHasher(target.part) if dl.options.verify else None
        runner = SegmentRunner(plan=plan, fd=fd, remote=dl.remote, url=resp.url, validator=validator,
                               options=dl.options, on_bytes=_progress(dl, plan, hasher, total, offset),
                               cancel=dl.cancel, emit=dl.emit, job=dl.job)
        try:
            disk_guard(lambda: runner.run(connections, resp, head, offset, keeper.save), target)
        except NoRanges as err:
            dl.single_only = True
            target.discard()
            raise Retryable(f"{err}; starting over with one connection", wait=0, progressed=False) from None
        except Retryable:
            dl.reached = max(dl.reached, plan.downloaded)
            raise
        if dl.options.fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
        if hasher is not None and not plan.finished:
            hasher.close()
    sha = hasher.finish(total) if hasher is not None else None
    return finish(dl, target, plan.downloaded, total, sha)


class _StateKeeper:
    """Saves the segment table (twice a second, from the supervising thread), writing data back every
    FLUSH_EVERY bytes so the final fsync has little left to do."""

    def __init__(self, dl, target: Target, plan: SegmentPlan, validator: Optional[str]):
        self.dl, self.target, self.plan, self.validator = dl, target, plan, validator
        self.fd: Optional[int] = None
        self.flushed = plan.downloaded

    def save(self) -> None:
        rows = self.plan.to_state()  # taken before any flush: it never claims bytes not yet written
        if self.fd is not None and self.dl.options.fsync and self.plan.downloaded - self.flushed >= FLUSH_EVERY:
            self.flushed = self.plan.downloaded
            os.fdatasync(self.fd)
        self.dl.new_state(mode="segments", validator=self.validator, total=self.plan.total,
                          segments=rows).save(self.target.state)


def _progress(dl, plan: SegmentPlan, hasher, total: int, offset: int):
    dl.meter = dl.meter or Meter()
    lock = threading.Lock()

    def on_bytes() -> None:
        with lock:
            if hasher is not None:
                hasher.advance_to(plan.contiguous())
            dl.emit(dl.meter.progress(plan.downloaded, total, job=dl.job, base=offset, name=dl.name))

    return on_bytes


# ---------------------------------------------------------------------------------------------- the end


def finish(dl, target: Target, written: int, total: Optional[int], sha: Optional[str]) -> FetchResult:
    """Check what arrived (size, the source's size, emptiness, sha256), then place it under its name."""
    name = target.final.name
    expected_size = dl.remote.size if dl.remote.size is not None else total
    problem = None
    if expected_size is not None and written != expected_size:
        problem = f"got {written} bytes but the {'source' if dl.remote.size is not None else 'server'} " \
                  f"announced {expected_size}"
    elif written == 0 and expects_binary(name):
        target.discard()
        raise DownloadError(f"{urlsplit(dl.remote.url).hostname} sent an empty file for {name} (0 bytes): "
                            "the link may have expired or the file may be gone; nothing was saved")
    elif dl.expected_sha and sha is not None and sha != dl.expected_sha:
        target.discard()
        raise IntegrityError(sha256_mismatch(name, dl.expected_sha, sha))
    if problem:
        target.discard()
        raise IntegrityError(f"{name}: {problem}; the damaged download was deleted, run again")
    path, same = place(target.part, target.final, sha, dl.emit, dl.job)
    target.state.unlink(missing_ok=True)
    log.info("saved %s (%d bytes) from %s", path, written, dl.job)
    dl.emit(Completed(path=str(path), bytes=written, sha256=sha, skipped=same, job=dl.job))
    return FetchResult(path=path, bytes=written, sha256=sha, skipped=same)


def _reraise(err: BaseException):
    raise err


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
