"""The transfer engine against a real local HTTP server: names, resume, retries, verification, safety."""
import hashlib
import json
import os
import threading

import pytest

from colab_sd import events as ev
from colab_sd.errors import (AuthError, DiskFullError, DownloadCancelled, DownloadError, ErrorPageError,
                             IntegrityError, NotFoundError)
from colab_sd.remote import RemoteFile
from colab_sd.transfer import TransferOptions, fetch
from servers import Route

FAST = TransferOptions(stall_timeout=1.0, connect_timeout=2.0, backoff_base=0.01, backoff_cap=0.2, retries=4,
                       chunk_size=64 * 1024)
BODY = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(BODY).hexdigest()


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def get(server, path, dest, **kw):
    collect = ev.Collect()
    opts = kw.pop("options", FAST)
    result = fetch(RemoteFile(url=server.url(path), **kw.pop("remote", {})), dest, on_event=collect,
                   options=opts, **kw)
    return result, collect


def sha_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def single_state(server, path, folder, name, **fields):
    """The state a one-stream download of `path` saved beside its `.part`."""
    from colab_sd.partfile import PartState
    PartState(mode="single", name=name, origin=server.url(path), **fields).save(folder / (name + ".part.json"))


# ---------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("disposition, expected", [
    ("attachment; filename*=UTF-8''dream%C3%A9r%20v8.safetensors", "dreamér v8.safetensors"),
    ('attachment; filename="quoted name.safetensors"', "quoted name.safetensors"),
    ("attachment; filename=plain.ckpt", "plain.ckpt"),
    ('attachment; filename="x.bin"; filename*=UTF-8\'\'real%E2%9C%93.safetensors', "real✓.safetensors"),
    ('attachment; filename="caf\u00c3\u00a9.safetensors"', "café.safetensors"),  # latin-1 mojibake repaired
    ('attachment; filename="../../../etc/evil.safetensors"', "evil.safetensors"),
    ('attachment; filename="..\\\\..\\\\win.safetensors"', "win.safetensors"),
    ('attachment; filename="bad\x07name.pt"', "badname.pt"),
])
def test_name_from_content_disposition(server, tmp_path, disposition, expected):
    server.route("/dl", Route(body=BODY, disposition=disposition))
    result, _ = get(server, "/dl", tmp_path)
    assert result.path == tmp_path / expected
    assert sha_of(result.path) == SHA
    assert listing(tmp_path) == [expected]


def test_name_from_path_after_redirect_chain_and_relative_location(server, tmp_path):
    server.route("/start", Route(redirect=server.url("/hop")))
    server.route("/hop", Route(redirect="/files/my%20model.safetensors?X-Sig=abc"))
    server.route("/files/my%20model.safetensors", Route(body=BODY))
    result, events = get(server, "/start", tmp_path)
    assert result.path.name == "my model.safetensors"
    assert sha_of(result.path) == SHA
    assert any("redirected" in e.message for e in events.of(ev.Info))


def test_name_from_signed_url_query(server, tmp_path):
    server.route("/api/download/models/1", Route(
        redirect="/bucket/abc123?response-content-disposition=attachment%3B%20filename%3D%22signed.safetensors%22"))
    server.route("/bucket/abc123", Route(body=BODY))
    result, _ = get(server, "/api/download/models/1", tmp_path)
    assert result.path.name == "signed.safetensors"


def test_user_name_wins_and_traversal_refused(server, tmp_path):
    server.route("/dl", Route(body=BODY, disposition='attachment; filename="server.safetensors"'))
    result, _ = get(server, "/dl", tmp_path, name="mine.safetensors")
    assert listing(tmp_path) == ["mine.safetensors"]
    with pytest.raises(Exception, match="plain file name"):
        get(server, "/dl", tmp_path, name="../escape.safetensors")


def test_server_name_cannot_escape_folder(server, tmp_path):
    dest = tmp_path / "inside"
    server.route("/dl", Route(body=BODY, disposition='attachment; filename="/tmp/../../abs.safetensors"'))
    result, _ = get(server, "/dl", dest)
    assert result.path.parent == dest
    assert listing(tmp_path) == ["inside"]


# ---------------------------------------------------------------------------------------------- bodies


def test_no_content_length_chunked(server, tmp_path):
    server.route("/c.safetensors", Route(body=BODY, chunked=True, ranges=False))
    result, events = get(server, "/c.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    progress = events.of(ev.Progress)
    assert progress and all(p.total is None and p.eta is None for p in progress)
    assert progress[-1].downloaded == len(BODY)


@pytest.mark.parametrize("offset", [0, 1, 65536, len(BODY) // 2, len(BODY) - 1])
def test_dropped_connection_resumes(server, tmp_path, offset):
    route = server.route("/d.safetensors", Route(body=BODY, drop_at=[offset], etag='"v1"'))
    result, events = get(server, "/d.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    second = server.hits("/d.safetensors")[1]["headers"]
    if offset >= 4096:  # below that, the engine's first sniffing read loses the few bytes and starts over
        assert second["Range"] == f"bytes={offset}-" and second["If-Range"] == '"v1"'
    assert listing(tmp_path) == ["d.safetensors"]
    assert route.drop_at == []


def test_stall_is_retried(server, tmp_path):
    server.route("/s.safetensors", Route(body=BODY, stall_at=[100_000], stall_seconds=3))
    result, events = get(server, "/s.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    assert any("retrying" in e.message for e in events.of(ev.Info))


def test_range_ignored_restarts_cleanly(server, tmp_path):
    route = server.route("/r.safetensors", Route(body=BODY, drop_at=[500_000]))
    with pytest.raises(DownloadError):
        get(server, "/r.safetensors", tmp_path, options=FAST.replace(retries=0))
    assert (tmp_path / "r.safetensors.part").stat().st_size == 500_000
    route.ranges = False  # the server now ignores Range: the engine must start over, not append
    result, events = get(server, "/r.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    assert any("starting" in e.message and "over" in e.message for e in events.of(ev.Info))
    assert listing(tmp_path) == ["r.safetensors"]


def test_416_with_complete_part_finishes(server, tmp_path):
    server.route("/f.safetensors", Route(body=BODY))
    (tmp_path / "f.safetensors.part").write_bytes(BODY)
    single_state(server, "/f.safetensors", tmp_path, "f.safetensors", total=len(BODY))
    result, _ = fetch_with_name(server, tmp_path, "/f.safetensors", "f.safetensors")
    assert sha_of(result.path) == SHA
    assert server.hits("/f.safetensors")[0]["headers"]["Range"] == f"bytes={len(BODY)}-"
    assert listing(tmp_path) == ["f.safetensors"]


def test_416_with_oversized_part_restarts(server, tmp_path):
    server.route("/f.safetensors", Route(body=BODY))
    (tmp_path / "f.safetensors.part").write_bytes(BODY + b"garbage-garbage")
    single_state(server, "/f.safetensors", tmp_path, "f.safetensors", total=len(BODY))
    result, _ = fetch_with_name(server, tmp_path, "/f.safetensors", "f.safetensors")
    assert sha_of(result.path) == SHA
    assert listing(tmp_path) == ["f.safetensors"]


def test_part_without_its_state_is_not_trusted(server, tmp_path):
    server.route("/f.safetensors", Route(body=BODY))
    (tmp_path / "f.safetensors.part").write_bytes(b"\0" * len(BODY))  # e.g. preallocated, then a crash
    result, _ = fetch_with_name(server, tmp_path, "/f.safetensors", "f.safetensors")
    assert sha_of(result.path) == SHA
    assert server.hits("/f.safetensors")[0]["headers"]["Range"] == "bytes=0-"


def fetch_with_name(server, dest, path, name):
    return get(server, path, dest, name=name)


def test_500_then_success_and_429_retry_after(server, tmp_path):
    server.route("/a.safetensors", Route(body=BODY, fail=[500, 503]))
    result, events = get(server, "/a.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    server.route("/b.safetensors", Route(body=BODY, fail=[429], retry_after="1"))
    result, events = get(server, "/b.safetensors", tmp_path, options=FAST.replace(backoff_cap=5))
    assert sha_of(result.path) == SHA
    # the wait is the server's Retry-After (1 s), not the engine's own backoff (0.01 s)
    assert any("429" in e.message and "retrying in 1.0s" in e.message for e in events.of(ev.Info))


def test_retry_after_is_honoured_and_capped():
    from colab_sd.http import backoff, parse_retry_after
    opts = TransferOptions(backoff_base=1, backoff_cap=10)
    assert backoff(1, opts, parse_retry_after("3")) == 3
    assert backoff(1, opts, parse_retry_after("3600")) == 10
    assert [backoff(i, opts) for i in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_persistent_500_gives_up_keeping_nothing_final(server, tmp_path):
    server.route("/x.safetensors", Route(body=BODY, fail=[500] * 10))
    with pytest.raises(DownloadError, match="gave up"):
        get(server, "/x.safetensors", tmp_path, options=FAST.replace(retries=2))
    assert listing(tmp_path) == []


def test_server_lies_about_length(server, tmp_path):
    server.route("/l.safetensors", Route(body=BODY, lie_length=1000, ranges=False))
    with pytest.raises(DownloadError, match="kept"):
        get(server, "/l.safetensors", tmp_path, options=FAST.replace(retries=2))
    assert not (tmp_path / "l.safetensors").exists()
    assert set(listing(tmp_path)) <= {"l.safetensors.part", "l.safetensors.part.json"}


@pytest.mark.parametrize("ctype, body, needle", [
    ("text/html", b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>", "Sign in"),
    ("application/json", b'{"error": "Unauthorized: token fake-civitai-token-0123456789 invalid"}', "Unauthorized"),
    ("application/octet-stream", b"<html><title>Oops</title>quota exceeded</html>", "Oops"),
])
def test_error_page_instead_of_model(server, tmp_path, ctype, body, needle):
    from colab_sd.tokens import remember_secret
    remember_secret("fake-civitai-token-0123456789")
    server.route("/m.safetensors", Route(body=body, content_type=ctype))
    with pytest.raises(ErrorPageError) as info:
        get(server, "/m.safetensors", tmp_path)
    message = str(info.value)
    assert needle in message and "fake-civitai-token" not in message and "\n" not in message
    assert listing(tmp_path) == []


def test_json_file_is_not_an_error_page(server, tmp_path):
    body = b'{"_class_name": "StableDiffusionPipeline", "message": "hello"}'
    server.route("/model_index.json", Route(body=body, content_type="application/json"))
    result, _ = get(server, "/model_index.json", tmp_path)
    assert result.path.read_bytes() == body


def test_login_redirect_is_an_auth_error(server, tmp_path):
    server.route("/api/download/models/9", Route(redirect="/login?returnUrl=%2Fmodels&reason=download-auth"))
    with pytest.raises(AuthError, match="login"):
        get(server, "/api/download/models/9", tmp_path)
    assert listing(tmp_path) == []


def test_status_errors(server, tmp_path):
    server.route("/gone", Route(status=404))
    with pytest.raises(NotFoundError):
        get(server, "/nothing-here.safetensors", tmp_path)
    server.route("/auth.safetensors", Route(body=BODY, require_header=("Authorization", "Bearer right")))
    with pytest.raises(AuthError):
        get(server, "/auth.safetensors", tmp_path)
    result, _ = get(server, "/auth.safetensors", tmp_path, remote={"headers": {"Authorization": "Bearer right"}})
    assert sha_of(result.path) == SHA


def test_auth_header_not_sent_across_hosts(server, tmp_path):
    from servers import TestServer
    with TestServer() as storage:
        storage.route("/blob", Route(body=BODY, reject_header="Authorization",
                                     disposition='attachment; filename="m.safetensors"'))
        server.route("/dl", Route(redirect=storage.url("/blob"), require_header=("Authorization", "Bearer t0ken-abcdef")))
        result, _ = get(server, "/dl", tmp_path, remote={"headers": {"Authorization": "Bearer t0ken-abcdef"}})
        assert sha_of(result.path) == SHA
        assert "Authorization" not in storage.hits("/blob")[0]["headers"]


# ---------------------------------------------------------------------------------------------- verification


def test_sha256_verified_and_mismatch_deletes(server, tmp_path):
    server.route("/h.safetensors", Route(body=BODY))
    result, events = get(server, "/h.safetensors", tmp_path, remote={"sha256": SHA.upper()})
    assert result.sha256 == SHA and events.of(ev.Completed)[0].sha256 == SHA
    other = tmp_path / "other"
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        get(server, "/h.safetensors", other, remote={"sha256": "0" * 64})
    assert listing(other) == []


def test_existing_complete_file_is_skipped(server, tmp_path):
    server.route("/e.safetensors", Route(body=BODY))
    get(server, "/e.safetensors", tmp_path)
    before = len(server.requests)
    result, events = get(server, "/e.safetensors", tmp_path)
    assert result.skipped and events.of(ev.Completed)[0].skipped
    assert len(server.requests) == before + 1  # without a hash, size alone proves nothing: fetched, compared, dropped
    # with a known hash and name, no request at all
    result, _ = get(server, "/e.safetensors", tmp_path, remote={"sha256": SHA, "filename": "e.safetensors"})
    assert result.skipped and len(server.requests) == before + 1


def test_existing_different_file_is_never_replaced(server, tmp_path):
    server.route("/e.safetensors", Route(body=BODY))
    (tmp_path / "e.safetensors").write_bytes(b"old and different")
    result, events = get(server, "/e.safetensors", tmp_path)
    assert sha_of(result.path) == SHA and result.path.name == "e-2.safetensors"
    assert (tmp_path / "e.safetensors").read_bytes() == b"old and different"
    assert any("already exists with other contents" in e.message for e in events.of(ev.Info))


# ---------------------------------------------------------------------------------------------- processes, disk, events


def test_restart_in_new_process_resumes_from_part(server, tmp_path):
    import subprocess, sys, textwrap
    server.route("/p.safetensors", Route(body=BODY, etag='"abc"', drop_at=[1_000_000]))
    script = textwrap.dedent(f"""
        from colab_sd.transfer import fetch, TransferOptions
        from colab_sd.remote import RemoteFile
        try:
            fetch(RemoteFile(url={server.url('/p.safetensors')!r}), {str(tmp_path)!r},
                  options=TransferOptions(retries=0, fsync=False))
        except Exception as err:
            print("FAILED", type(err).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "FAILED DownloadError" in out.stdout
    assert (tmp_path / "p.safetensors.part").stat().st_size == 1_000_000
    result, events = get(server, "/p.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    last = server.hits("/p.safetensors")[-1]["headers"]
    assert last["Range"] == "bytes=1000000-" and last["If-Range"] == '"abc"'
    assert any("resuming" in e.message for e in events.of(ev.Info))
    assert listing(tmp_path) == ["p.safetensors"]


def test_changed_file_on_server_restarts_via_if_range(server, tmp_path):
    route = server.route("/v.safetensors", Route(body=BODY, etag='"one"', drop_at=[700_000]))
    with pytest.raises(DownloadError):
        get(server, "/v.safetensors", tmp_path, options=FAST.replace(retries=0))
    new_body = os.urandom(len(BODY))
    route.body, route.etag = new_body, '"two"'
    result, _ = get(server, "/v.safetensors", tmp_path)
    assert result.path.read_bytes() == new_body


def test_two_concurrent_processes_on_the_same_target(server, tmp_path):
    """Two processes start the same download while the first is still running: the second waits on the lock,
    then finds the finished file; the bytes are written once and right."""
    import subprocess, sys, textwrap, time
    body = os.urandom(1_500_000)

    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        for i in range(0, len(body), 100_000):
            h.wfile.write(body[i:i + 100_000])
            h.wfile.flush()
            time.sleep(0.1)

    server.route("/same.safetensors", Route(handler=trickle))
    script = textwrap.dedent(f"""
        from colab_sd.transfer import fetch, TransferOptions
        from colab_sd.remote import RemoteFile
        r = fetch(RemoteFile(url={server.url('/same.safetensors')!r}), {str(tmp_path)!r},
                  on_event=lambda e: print(e.to_json(), flush=True), options=TransferOptions(connections=1))
        print("SKIPPED" if r.skipped else "FETCHED", flush=True)
    """)
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "same.safetensors.part").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    out_first, _ = first.communicate(timeout=60)
    assert out_first.strip().endswith("FETCHED")
    assert "another download of same.safetensors is running; waiting for it" in second.stdout
    assert second.stdout.strip().endswith("SKIPPED")
    assert hashlib.sha256((tmp_path / "same.safetensors").read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert listing(tmp_path) == ["same.safetensors"]


def test_disk_full_mid_download(server, tmp_path):
    """RLIMIT_FSIZE in a child process makes writes fail with EFBIG mid-file, as a full disk would."""
    import subprocess, sys, textwrap
    server.route("/big.safetensors", Route(body=BODY))
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        from colab_sd.transfer import fetch, TransferOptions
        from colab_sd.remote import RemoteFile
        from colab_sd.errors import DiskFullError
        try:
            fetch(RemoteFile(url={server.url('/big.safetensors')!r}), {str(tmp_path)!r}, options=TransferOptions(retries=1))
        except DiskFullError as err:
            print("DISKFULL", err)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "DISKFULL no space left" in out.stdout, out.stdout + out.stderr
    assert not (tmp_path / "big.safetensors").exists()
    assert (tmp_path / "big.safetensors.part").exists()  # kept for resume after freeing space
    result, _ = get(server, "/big.safetensors", tmp_path)
    assert sha_of(result.path) == SHA


def test_not_enough_space_is_refused_up_front(server, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    server.route("/z.safetensors", Route(body=BODY))
    with pytest.raises(DiskFullError, match="not enough free space"):
        get(server, "/z.safetensors", tmp_path)
    assert not (tmp_path / "z.safetensors").exists()


def test_cancel_keeps_part(server, tmp_path):
    server.route("/k.safetensors", Route(body=BODY * 4))
    cancel = threading.Event()

    def stop_soon(event):
        if isinstance(event, ev.Progress) and event.downloaded > 500_000:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        fetch(RemoteFile(url=server.url("/k.safetensors")), tmp_path, on_event=stop_soon, cancel=cancel, options=FAST)
    assert (tmp_path / "k.safetensors.part").exists() and not (tmp_path / "k.safetensors").exists()


def test_listener_that_raises_does_not_break_download(server, tmp_path):
    server.route("/q.safetensors", Route(body=BODY))

    def broken(event):
        raise RuntimeError("widget exploded")

    result = fetch(RemoteFile(url=server.url("/q.safetensors")), tmp_path, on_event=broken, options=FAST)
    assert sha_of(result.path) == SHA


def test_event_stream_fields_and_order(server, tmp_path):
    server.route("/ev.safetensors", Route(body=BODY))
    result, events = get(server, "/ev.safetensors", tmp_path)
    kinds = [e.status for e in events.events]
    assert kinds[0] == "info" and kinds[-1] == "completed"
    progress = events.of(ev.Progress)
    assert progress[-1].downloaded == progress[-1].total == len(BODY)
    assert all(p.speed >= 0 for p in progress)
    done = events.of(ev.Completed)[0].to_dict()
    assert done == {"status": "completed", "job": server.url("/ev.safetensors"), "path": str(result.path),
                    "bytes": len(BODY), "sha256": SHA, "skipped": False}
    json.dumps([e.to_dict() for e in events.events])


def test_non_http_url_is_refused(tmp_path):
    from colab_sd.errors import InputError
    with pytest.raises(InputError, match="only http"):
        fetch(RemoteFile(url="ftp://example.com/x"), tmp_path)


def test_unknown_host_fails_at_once_and_refusal_after_a_few_tries(tmp_path):
    from colab_sd.errors import DownloadError
    with pytest.raises(DownloadError, match="cannot find the host no-such-host.invalid") as info:
        fetch(RemoteFile(url="http://no-such-host.invalid/model.safetensors"), tmp_path, options=FAST)
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    collect = ev.Collect()
    with pytest.raises(DownloadError, match="refused the connection; gave up after 3 attempts$"):
        fetch(RemoteFile(url=f"http://127.0.0.1:{port}/model.safetensors"), tmp_path, on_event=collect,
              options=FAST.replace(retries=8))
    assert len([e for e in collect.of(ev.Info) if "retrying" in e.message]) == 2
    assert listing(tmp_path) == []


def test_binary_body_labelled_text_plain_is_not_an_error_page(server, tmp_path):
    """nginx without mime.types labels everything text/plain: a model must still land."""
    server.route("/m.safetensors", Route(body=BODY, content_type="text/plain"))
    result, _ = get(server, "/m.safetensors", tmp_path)
    assert sha_of(result.path) == SHA
    server.route("/e.safetensors", Route(body=b"Unauthorized: sign in first", content_type="text/plain"))
    with pytest.raises(ErrorPageError, match="Unauthorized"):
        get(server, "/e.safetensors", tmp_path / "e")
