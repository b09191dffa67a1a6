"""Kill the byte mover at hundreds of moments; the next run must always end with the right file.

A forked child downloads from the real local server and is SIGKILLed: either at an exact write
point (before or after every data write, preallocation, fsync, state save and rename, counted in
the child by wrapping those calls) or after a random delay. Then the parent checks that no wrong
file is under the final name and reruns the download, which must end with the correct sha256 and
nothing else in the folder. Damaged state files (truncated, empty, a JSON list) get the same check.
"""
import hashlib
import os
import random
import shutil
import signal
import time

import pytest

from colab_sd import receive
from colab_sd.partfile import PartState
from colab_sd.remote import RemoteFile
from colab_sd.transfer import TransferOptions, fetch
from servers import Route

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")

BODY = os.urandom(512 * 1024 + 4321)
SHA = hashlib.sha256(BODY).hexdigest()
NAME = "crash.safetensors"
SEGMENTED = TransferOptions(connections=4, segment_min=64 * 1024, chunk_size=16 * 1024, retries=2,
                            backoff_base=0.01, backoff_cap=0.05, stall_timeout=2, connect_timeout=2)
SINGLE = SEGMENTED.replace(connections=1)


class _Points:
    """Counts write points in a forked child and SIGKILLs it at point `kill_at` (None: only count)."""

    def __init__(self, kill_at):
        self.kill_at, self.n = kill_at, 0

    def hit(self):
        if self.n == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.n += 1

    def wrap(self, func):
        def wrapped(*args, **kwargs):
            self.hit()
            try:
                return func(*args, **kwargs)
            finally:
                self.hit()
        return wrapped

    def install(self):
        for name in ("pwrite", "ftruncate", "replace", "fsync", "fdatasync"):
            setattr(os, name, self.wrap(getattr(os, name)))
        PartState.save = self.wrap(PartState.save)
        real_open, points = open, self

        class Counted:  # the one-stream writer's file: every write is a point
            def __init__(self, fh):
                self._fh = fh

            def write(self, data):
                return points.wrap(self._fh.write)(data)

            def __getattr__(self, name):
                return getattr(self._fh, name)

            def __enter__(self):
                self._fh.__enter__()
                return self

            def __exit__(self, *exc):
                return self._fh.__exit__(*exc)

        receive.open = lambda *a, **k: Counted(real_open(*a, **k))


def _child(url, dest, options, kill_at=None, report=None):
    """Fork a child that downloads (killed at point `kill_at` if given); returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        points = _Points(kill_at)
        points.install()
        fetch(RemoteFile(url=url), dest, options=options)
        if report is not None:
            os.write(report, str(points.n).encode())
    except BaseException:
        code = 3
    finally:
        os._exit(code)


def _wait(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the child download hung")


def _count_points(url, dest, options):
    read, write = os.pipe()
    _wait(_child(url, dest, options, report=write))
    os.close(write)
    count = int(os.read(read, 64) or b"0")
    os.close(read)
    shutil.rmtree(dest)
    return count


def _no_wrong_final(dest):
    if not dest.exists():  # killed before it created the folder
        return
    final = dest / NAME
    if final.exists():  # killed after the rename: then it must be the right file
        assert hashlib.sha256(final.read_bytes()).hexdigest() == SHA, "a wrong file under the final name"
    assert not [p for p in dest.iterdir() if p.name != NAME and not p.name.startswith(NAME + ".part")]


def _rerun_is_right(url, dest, options):
    result = fetch(RemoteFile(url=url), dest, options=options)
    assert result.path == dest / NAME
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == SHA
    assert sorted(p.name for p in dest.iterdir()) == [NAME]


@pytest.mark.parametrize("options", [SEGMENTED, SINGLE], ids=["segments", "one-stream"])
def test_killed_at_every_write_point_the_rerun_ends_right(server, tmp_path, options):
    server.route("/" + NAME, Route(body=BODY, etag='"v1"'))
    url = server.url("/" + NAME)
    points = _count_points(url, tmp_path / "count", options)
    assert points > 40  # every write, the preallocation, fsyncs, state saves and the rename, before and after
    rng = random.Random(13)
    for i, kill_at in enumerate(range(points)):  # every point, in every run
        dest = tmp_path / f"k{i}"
        _wait(_child(url, dest, options, kill_at=kill_at))
        _no_wrong_final(dest)
        if i % 6 == 1:  # killed again while resuming, at another point
            _wait(_child(url, dest, options, kill_at=rng.randrange(points)))
            _no_wrong_final(dest)
        _rerun_is_right(url, dest, options)
        shutil.rmtree(dest)


def test_killed_at_random_moments_the_rerun_ends_right(server, tmp_path):
    server.route("/" + NAME, Route(body=BODY, etag='"v1"'))
    url = server.url("/" + NAME)
    rng = random.Random(7)
    started = time.monotonic()
    _wait(_child(url, tmp_path / "timing", SEGMENTED))
    full = max(time.monotonic() - started, 0.01)
    shutil.rmtree(tmp_path / "timing")
    for i in range(40):
        dest = tmp_path / f"t{i}"
        pid = _child(url, dest, SEGMENTED if i % 2 else SINGLE)
        time.sleep(rng.uniform(0, full * 1.2))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait(pid)
        _no_wrong_final(dest)
        _rerun_is_right(url, dest, SEGMENTED if i % 3 else SINGLE)
        shutil.rmtree(dest)


# ---------------------------------------------------------------------------------------------- damaged state


def _preallocated_half_done(server, dest):
    """A segmented .part killed half way: its first half written, the rest preallocated zeros."""
    dest.mkdir()
    part = dest / (NAME + ".part")
    with open(part, "wb") as fh:
        fh.write(BODY[: len(BODY) // 2])
        fh.truncate(len(BODY))
    return part


@pytest.mark.parametrize("state", ["", '{"mode": "segm', "[]", '["single"]', '{"validator": null, "total": 1}',
                                   '{"version": 2, "mode": "single", "name": "crash.safetensors", "origin": 5}',
                                   None], ids=["empty", "truncated", "list", "list2", "old-format", "wrong-type",
                                               "missing"])
def test_damaged_state_beside_a_preallocated_part_restarts(server, tmp_path, state):
    """Issue 13 A1/A16: a truncated or wrong-shaped .part.json never makes the zeros of a preallocated
    .part count as downloaded."""
    server.route("/" + NAME, Route(body=BODY, etag='"v1"'))
    dest = tmp_path / "models"
    _preallocated_half_done(server, dest)
    if state is not None:
        (dest / (NAME + ".part.json")).write_text(state)
    _rerun_is_right(server.url("/" + NAME), dest, SEGMENTED)
    assert server.hits("/" + NAME)[0]["headers"]["Range"] == "bytes=0-"


def test_single_stream_state_beside_a_preallocated_part_restarts(server, tmp_path):
    """The window the issue found: a one-stream state, then preallocation, then a kill before the segment
    table was written. The .part is longer than nothing the state can account for: start over."""
    server.route("/" + NAME, Route(body=BODY, etag='"v1"'))
    dest = tmp_path / "models"
    part = _preallocated_half_done(server, dest)
    PartState(mode="single", name=NAME, origin=server.url("/" + NAME), validator='"v1"',
              total=len(BODY) - 1).save(dest / (NAME + ".part.json"))
    assert part.stat().st_size == len(BODY)
    _rerun_is_right(server.url("/" + NAME), dest, SINGLE)


def test_another_links_part_of_the_same_name_is_never_resumed(server, tmp_path):
    """A `.part` left by a different link under the same name holds other bytes: it is not appended to."""
    server.route("/a/" + NAME, Route(body=BODY))  # no validator: If-Range could not tell the two apart
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(os.urandom(1000))
    PartState(mode="single", name=NAME, origin=server.url("/b/" + NAME)).save(dest / (NAME + ".part.json"))
    _rerun_is_right(server.url("/a/" + NAME), dest, SINGLE)
    assert server.hits("/a/" + NAME)[0]["headers"]["Range"] == "bytes=0-"
