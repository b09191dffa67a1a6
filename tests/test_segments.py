"""Segmented downloads under segment-level faults, against a real local server.

One scripted origin (`Origin`) serves real bytes with Range and misbehaves on chosen range
requests only: a connection dropped mid-segment, a 500, a range starting elsewhere, a 200 full
body, a stall, a lying Content-Range. Every test checks the bytes on disk and that nothing else
(no `.part`, state or lock file) is left behind.
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from colab_sd import events as ev
from colab_sd.errors import DownloadError, IntegrityError
from colab_sd.remote import RemoteFile
from colab_sd.transfer import TransferOptions, fetch
from servers import Route, TestServer

# Small segments so that a 4 MiB body is cut into four ranges of about 1 MiB.
SEG = TransferOptions(connections=4, segment_min=256 * 1024, stall_timeout=2.0, connect_timeout=2.0,
                      backoff_base=0.01, backoff_cap=0.2, retries=4, chunk_size=64 * 1024, fsync=False)
BODY = os.urandom(4 * 1024 * 1024 + 12345)
SHA = hashlib.sha256(BODY).hexdigest()
TOKEN = "fake-civitai-token-0123456789"


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def sha_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ranges_asked(requests):
    """(start, end or None) of every ranged GET, in arrival order."""
    found = []
    for r in requests:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", r["headers"].get("Range", ""))
        if m:
            found.append((int(m.group(1)), int(m.group(2)) if m.group(2) else None))
    return found


class Origin:
    """A Range-capable file handler for `Route(handler=...)` whose faults hit chosen requests once each.

    `fault(when, action)`: the first request for which `when(start, end)` is true gets `action`
    instead of a normal answer; `end` is None for an open range (`bytes=N-`), and for no Range at all
    `start` is None. Actions: ("drop", n) send n body bytes then cut the connection; ("status", code);
    ("shift", delta) answer 206 for a range starting `delta` bytes later (Content-Range says so);
    ("lie", delta) the same bytes but a Content-Range claiming the asked start; ("full",) 200 with the
    whole file; ("stall", n) send n bytes and hang until released; ("total", n) 206 with a wrong total.
    """

    def __init__(self, body=BODY, etag='"v1"', ranges=True, chunk=64 * 1024):
        self.body, self.etag, self.ranges, self.chunk = body, etag, ranges, chunk
        self.faults = []
        self.hit = []  # (start, end, action) of the faulted requests
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every stall

    def fault(self, when, action):
        with self.lock:
            self.faults.append((when, action))
        return self

    def __call__(self, h):
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        start = int(m.group(1)) if m else None
        end = (int(m.group(2)) if m.group(2) else None) if m else None
        with self.lock:
            action = None
            for i, (when, act) in enumerate(self.faults):
                if when(start, end):
                    action = act
                    del self.faults[i]
                    self.hit.append((start, end, act))
                    break
        total = len(self.body)
        if action and action[0] == "status":
            return self._simple(h, action[1], b"<html><title>Server error</title></html>")
        if start is None or not self.ranges or (action and action[0] == "full"):
            return self._send(h, 200, 0, total - 1, action)
        last = total - 1 if end is None else min(end, total - 1)
        if start >= total:
            return self._simple(h, 416, b"", {"Content-Range": f"bytes */{total}"})
        return self._send(h, 206, start, last, action)

    def _send(self, h, status, first, last, action):
        total = len(self.body)
        claimed_first, claimed_total = first, total
        if action and action[0] == "shift":
            first, claimed_first = first + action[1], first + action[1]
        if action and action[0] == "lie":
            first = first + action[1]  # the bytes come from elsewhere; the header says otherwise
        if action and action[0] == "total":
            claimed_total = action[1]
        data = self.body[first:first + (last - claimed_first) + 1]
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Accept-Ranges", "bytes" if self.ranges else "none")
        h.send_header("ETag", self.etag)
        if status == 206:
            h.send_header("Content-Range", f"bytes {claimed_first}-{claimed_first + len(data) - 1}/{claimed_total}")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        limit = len(data)
        if action and action[0] in ("drop", "stall"):
            limit = min(limit, action[1])
        try:
            for i in range(0, limit, self.chunk):
                piece = data[i:min(i + self.chunk, limit)]
                h.wfile.write(piece)
            h.wfile.flush()
            if action and action[0] == "stall":
                self.release.wait(30)
            if action and action[0] in ("drop", "stall"):
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client hung up (it stops reading at its segment's end)
            h.close_connection = True

    @staticmethod
    def _simple(h, status, body, headers=None):
        h.send_response(status)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


def segment_request(start, end):
    """A request for one segment other than the first: a closed range not starting at 0."""
    return start is not None and start > 0 and end is not None


def get(server, path, dest, options=SEG, **remote):
    collect = ev.Collect()
    result = fetch(RemoteFile(url=server.url(path), **remote), dest, on_event=collect, options=options)
    return result, collect


def assert_only(folder, name):
    assert listing(folder) == [name], "stray files left next to the download"
    assert sha_of(folder / name) == SHA


# ---------------------------------------------------------------------------------------------- the happy path


def test_segments_are_used_and_cover_the_file_exactly(server, tmp_path):
    origin = Origin()
    server.route("/m.safetensors", Route(handler=origin))
    result, events = get(server, "/m.safetensors", tmp_path)
    assert result.sha256 == SHA and result.bytes == len(BODY)
    assert_only(tmp_path, "m.safetensors")
    asked = ranges_asked(server.hits("/m.safetensors"))
    assert asked[0] == (0, None)  # the first GET asks bytes=0- to learn whether ranges work
    closed = sorted(a for a in asked[1:] if a[1] is not None)
    assert len(closed) >= 3, asked  # four connections: at least three more ranged requests
    assert any("over 4 connections" in e.message for e in events.of(ev.Info))
    # Without faults no range is asked for twice, and every request stays inside the file.
    starts = [a for a, _ in asked]
    assert len(starts) == len(set(starts)), asked
    assert all(0 <= a < len(BODY) and (b is None or a <= b < len(BODY)) for a, b in asked), asked


# ---------------------------------------------------------------------------------------------- one segment's faults


def first_stream(start, end):
    """The download's first GET (bytes=0-), whose body becomes the first segment's stream."""
    return start == 0 and end is None


@pytest.mark.parametrize("which", [segment_request, first_stream], ids=["segment-request", "first-stream"])
def test_one_connection_dropped_mid_segment_resumes_that_segment(server, tmp_path, which):
    dropped = 300 * 1024
    origin = Origin().fault(which, ("drop", dropped))
    server.route("/d.safetensors", Route(handler=origin))
    result, events = get(server, "/d.safetensors", tmp_path)
    assert_only(tmp_path, "d.safetensors")
    (seg_start, seg_end, _), = origin.hit
    asked = ranges_asked(server.hits("/d.safetensors"))
    again = [a for a in asked if a != (seg_start, seg_end) and seg_start < a[0] <= seg_start + dropped]
    assert again, f"the dropped segment was not resumed from where it stood: {asked}"
    assert not [a for a in asked[asked.index((seg_start, seg_end)) + 1:] if a[0] == seg_start], \
        "the dropped segment was fetched again from its start"
    assert any("one connection" in e.message for e in events.of(ev.Info))


def test_one_segment_gets_500_then_succeeds(server, tmp_path):
    origin = Origin().fault(segment_request, ("status", 500))
    server.route("/e.safetensors", Route(handler=origin))
    result, events = get(server, "/e.safetensors", tmp_path)
    assert_only(tmp_path, "e.safetensors")
    (start, end, _), = origin.hit
    # The same segment asked again from its start (its end may have moved: another connection can take a half).
    assert [a for a, _ in ranges_asked(server.hits("/e.safetensors"))].count(start) == 2
    assert any("500" in e.message for e in events.of(ev.Info))


def test_one_segment_stalls_and_is_retried(server, tmp_path):
    origin = Origin().fault(segment_request, ("stall", 128 * 1024))
    server.route("/s.safetensors", Route(handler=origin))
    try:
        result, _ = get(server, "/s.safetensors", tmp_path, options=SEG.replace(stall_timeout=0.5))
    finally:
        origin.release.set()
    assert_only(tmp_path, "s.safetensors")


@pytest.mark.parametrize("action", [("shift", 65536), ("shift", -65536), ("total", len(BODY) + 1)],
                         ids=["starts-later", "starts-earlier", "wrong-total"])
def test_wrong_range_in_206_is_detected_and_never_written(server, tmp_path, action):
    origin = Origin().fault(segment_request, action)
    server.route("/w.safetensors", Route(handler=origin))
    result, events = get(server, "/w.safetensors", tmp_path)
    assert_only(tmp_path, "w.safetensors")
    assert len(origin.hit) == 1
    # a wrong start is that range's glitch; a wrong total is another version of the file: start over
    assert any("wrong range" in e.message or "wrong place" in e.message or "is now" in e.message
               for e in events.of(ev.Info))


def test_range_always_answered_from_zero_is_detected(server, tmp_path):
    # The tests' server option: a 206 that starts at 0 whatever was asked (a broken cache in front of storage).
    server.route("/z.safetensors", Route(body=BODY, wrong_range_start=True, etag='"z"'))
    result, _ = get(server, "/z.safetensors", tmp_path)
    assert_only(tmp_path, "z.safetensors")


def test_200_full_body_to_a_segment_request_falls_back_to_one_stream(server, tmp_path):
    origin = Origin().fault(segment_request, ("full",))
    server.route("/f.safetensors", Route(handler=origin))
    result, events = get(server, "/f.safetensors", tmp_path)
    assert_only(tmp_path, "f.safetensors")
    assert result.sha256 == SHA
    hits = server.hits("/f.safetensors")
    first, last, _ = origin.hit[0]
    faulted = next(i for i, r in enumerate(hits) if r["headers"].get("Range") == f"bytes={first}-{last}")
    after = ranges_asked(hits[faulted + 1:])
    # Once the server proved ranges untrustworthy, one fresh stream from byte 0 finishes the file, alone.
    assert after.count((0, None)) == 1, after
    assert after[after.index((0, None)) + 1:] == [], f"segment requests after the fallback: {after}"
    assert any("one connection" in e.message for e in events.of(ev.Info))


def test_lying_content_range_is_caught_by_sha256_and_deleted(server, tmp_path):
    # 206 whose Content-Range claims the asked start while the bytes come from elsewhere: only the hash can tell.
    origin = Origin().fault(segment_request, ("lie", 4096))
    server.route("/l.safetensors", Route(handler=origin))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        get(server, "/l.safetensors", tmp_path, sha256=SHA)
    assert listing(tmp_path) == []  # the damaged data is gone, nothing under the final name


# ---------------------------------------------------------------------------------------------- verification


def test_sha256_verified_across_segments(server, tmp_path):
    server.route("/v.safetensors", Route(handler=Origin()))
    result, events = get(server, "/v.safetensors", tmp_path, sha256=SHA)
    assert_only(tmp_path, "v.safetensors")
    assert result.sha256 == SHA
    done = events.of(ev.Completed)
    assert len(done) == 1 and done[0].sha256 == SHA and done[0].bytes == len(BODY)


def test_sha256_mismatch_with_segments_deletes_everything(server, tmp_path):
    server.route("/x.safetensors", Route(handler=Origin()))
    with pytest.raises(IntegrityError, match="not kept"):
        get(server, "/x.safetensors", tmp_path, sha256="0" * 64)
    assert listing(tmp_path) == []


def test_verify_off_still_checks_size_and_writes_the_right_bytes(server, tmp_path):
    server.route("/n.safetensors", Route(handler=Origin()))
    result, _ = get(server, "/n.safetensors", tmp_path, options=SEG.replace(verify=False))
    assert_only(tmp_path, "n.safetensors")
    assert result.sha256 is None


# ---------------------------------------------------------------------------------------------- no ranges


def test_server_without_range_support_gets_one_stream(server, tmp_path):
    origin = Origin(ranges=False)
    server.route("/r.safetensors", Route(handler=origin))
    result, events = get(server, "/r.safetensors", tmp_path)
    assert_only(tmp_path, "r.safetensors")
    hits = server.hits("/r.safetensors")
    assert len(hits) == 1  # one GET, one stream: no segment requests to a server that ignores Range
    assert not any("connections" in e.message for e in events.of(ev.Info))


def test_segmented_part_then_server_stops_honouring_range_starts_over(server, tmp_path):
    origin = Origin().fault(segment_request, ("drop", 100 * 1024))
    server.route("/o.safetensors", Route(handler=origin))
    with pytest.raises(DownloadError, match="kept"):
        get(server, "/o.safetensors", tmp_path, options=SEG.replace(retries=0))
    assert listing(tmp_path) == ["o.safetensors.part", "o.safetensors.part.json"]  # preallocated, with its table
    origin.ranges = False  # e.g. a CDN node without Range support: the holes must not survive into the file
    result, events = get(server, "/o.safetensors", tmp_path)
    assert_only(tmp_path, "o.safetensors")
    assert any("starting o.safetensors over" in e.message for e in events.of(ev.Info))


# ---------------------------------------------------------------------------------------------- progress


def test_progress_aggregates_over_segments(server, tmp_path):
    server.route("/p.safetensors", Route(handler=Origin()))
    result, events = get(server, "/p.safetensors", tmp_path)
    assert_only(tmp_path, "p.safetensors")
    progress = events.of(ev.Progress)
    assert len(progress) > 4
    done = [p.downloaded for p in progress]
    assert done == sorted(done), "progress went backwards"
    assert all(p.total == len(BODY) for p in progress)
    assert done[-1] == len(BODY)
    assert all(p.downloaded <= p.total for p in progress)
    # Events come after Info and before Completed, never after it.
    kinds = [type(e).__name__ for e in events.events]
    assert kinds[-1] == "Completed" and "Progress" not in kinds[kinds.index("Completed"):]


# ---------------------------------------------------------------------------------------------- redirects and tokens


class SignedStorage:
    """Storage whose signed URLs work once: the second use of a signature is a 403 (it expired)."""

    def __init__(self, origin: Origin):
        self.origin = origin
        self.used = set()
        self.lock = threading.Lock()
        self.refused = 0

    def __call__(self, h):
        sig = re.search(r"[?&]X-Sig=(\d+)", h.path)
        with self.lock:
            fresh = sig is not None and sig.group(1) not in self.used
            if sig:
                self.used.add(sig.group(1))
            if not fresh:
                self.refused += 1
        if h.headers.get("Authorization") or TOKEN in h.path:
            return Origin._simple(h, 400, b'{"error":"credentials sent to storage"}')
        if not fresh:
            return Origin._simple(h, 403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        return self.origin(h)


def test_expired_signed_url_is_re_resolved_and_token_stays_on_origin(server, tmp_path):
    with TestServer() as storage:
        signed = SignedStorage(Origin())
        storage.route("/bucket/model.safetensors", Route(handler=signed))
        issued = []

        def api(h):
            if h.headers.get("Authorization") != f"Bearer {TOKEN}":
                return Origin._simple(h, 401, b'{"error":"Unauthorized"}')
            issued.append(len(issued) + 1)
            h.send_response(302)
            h.send_header("Location", storage.url(f"/bucket/model.safetensors?X-Sig={len(issued)}&Expires=60"))
            h.send_header("Content-Length", "0")
            h.end_headers()

        server.route("/api/download/models/1", Route(handler=api))
        result, events = get(server, "/api/download/models/1", tmp_path,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert_only(tmp_path, "model.safetensors")
        assert signed.refused >= 1 and len(issued) >= 2, "the expired link was never re-resolved"
        assert any("expired" in e.message for e in events.of(ev.Info))
        for r in storage.requests:  # no segment, first or re-resolved, carried the token to storage
            assert "Authorization" not in r["headers"] and TOKEN not in r["full_path"]
            assert TOKEN not in json.dumps(r["headers"])
        assert all(r["headers"].get("Authorization") == f"Bearer {TOKEN}"
                   for r in server.hits("/api/download/models/1"))
        assert not any(TOKEN in json.dumps(e.to_dict()) for e in events.events)


# ---------------------------------------------------------------------------------------------- kill and resume


def test_killed_process_resumes_without_refetching_finished_segments(server, tmp_path):
    half = len(BODY) // 2
    stalling = threading.Event()
    stalling.set()
    origin = Origin()

    def in_second_half(start, end):
        return start is not None and start >= half

    def handler(h):  # while `stalling` is set, every range starting in the second half sends a little and hangs
        if stalling.is_set() and in_second_half(*(ranges_asked([{"headers": dict(h.headers)}]) or [(None, None)])[0]):
            origin.fault(in_second_half, ("stall", 64 * 1024))
        return origin(h)

    server.route("/k.safetensors", Route(handler=handler))
    script = textwrap.dedent(f"""
        from colab_sd.transfer import fetch, TransferOptions
        from colab_sd.remote import RemoteFile
        fetch(RemoteFile(url={server.url('/k.safetensors')!r}), {str(tmp_path)!r},
              options=TransferOptions(connections=4, segment_min=256 * 1024, stall_timeout=60, fsync=False,
                                      chunk_size=64 * 1024))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state_path = tmp_path / "k.safetensors.part.json"
    finished = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the saved state shows the first half on disk
            try:
                rows = json.loads(state_path.read_text())["segments"] or []
            except (OSError, ValueError, KeyError, TypeError):
                rows = []
            finished = [(a, b) for a, b, done in rows if done == b - a]
            if rows and sum(b - a for a, b in finished) >= half - 65536 and any(a == 0 for a, _ in finished):
                break
            assert child.poll() is None, child.communicate()
            time.sleep(0.05)
        else:
            pytest.fail(f"the first half never finished: {state_path.read_text() if state_path.exists() else 'no state'}")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    saved = json.loads(state_path.read_text())
    finished = [(a, b) for a, b, done in saved["segments"] if done == b - a]
    assert not (tmp_path / "k.safetensors").exists()
    assert (tmp_path / "k.safetensors.part").stat().st_size == len(BODY)  # preallocated, holes where missing

    stalling.clear()
    origin.release.set()
    before = len(server.hits("/k.safetensors"))
    result, events = get(server, "/k.safetensors", tmp_path)
    assert_only(tmp_path, "k.safetensors")
    asked = ranges_asked(server.hits("/k.safetensors")[before:])
    assert asked, "the resumed download made no request"
    for start, end in asked:
        last = len(BODY) - 1 if end is None else end
        for a, b in finished:
            # A request may start inside no finished segment; the open first stream may run past one, but is
            # then cut at its own segment's end by the client, so only its start is checked.
            assert not (a <= start < b), f"refetched finished bytes {a}-{b} with Range {start}-{end}"
            if end is not None:
                assert last < a or start >= b, f"range {start}-{end} overlaps finished {a}-{b}"
    first_gap = min(a + done for a, b, done in saved["segments"] if done < b - a)
    assert asked[0] == (first_gap, None)  # the new process starts at the first missing byte
    assert any("resuming" in e.message for e in events.of(ev.Info))


def test_preallocated_part_without_state_is_not_taken_as_complete(server, tmp_path):
    # What a kill between preallocating the .part and the first save of its segment table leaves behind
    # (or a user who deleted the .part.json): a sparse file of the full size. Its zeros are not the model.
    server.route("/h.safetensors", Route(handler=Origin()))
    with open(tmp_path / "h.safetensors.part", "wb") as fh:
        fh.truncate(len(BODY))
    result, _ = get(server, "/h.safetensors", tmp_path)
    assert_only(tmp_path, "h.safetensors")


# ---------------------------------------------------------------------------------------------- the CLI


def test_cli_connections_and_json_progress_over_segments(server, tmp_path):
    """`colab-sd download --connections 4 --json`: default segment sizes, aggregated progress, a verified file."""
    body = os.urandom(16 * 1024 * 1024 + 99)  # four connections at the engine's default 4 MiB minimum
    server.route("/big.safetensors", Route(handler=Origin(body=body)))
    env = {k: v for k, v in os.environ.items() if k != "COLAB_SD_HOME"}
    out = subprocess.run([sys.executable, "-m", "colab_sd.cli", "download", "--json", "--connections", "4",
                          "--sha256", hashlib.sha256(body).hexdigest(), "--dir", str(tmp_path),
                          server.url("/big.safetensors")], capture_output=True, text=True, timeout=60,
                         env={**env, "NO_PROXY": "127.0.0.1"})
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    progress = [e["downloaded"] for e in events if e["status"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == len(body)
    assert events[-1]["status"] == "completed" and events[-1]["sha256"] == hashlib.sha256(body).hexdigest()
    folder = tmp_path / "other"
    assert {p.name for p in folder.iterdir()} - {"big.safetensors.json"} == {"big.safetensors"}
    assert hashlib.sha256((folder / "big.safetensors").read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    closed = [a for a in ranges_asked(server.hits("/big.safetensors")) if a[1] is not None]
    assert len(closed) >= 3  # four connections
