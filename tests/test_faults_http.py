"""Issue 13's hostile and broken servers, each against the real local server: the byte mover ends with the
right file under a safe name, or a one-line ColabSDError with nothing under a final name."""
import gzip
import hashlib
import os
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from colab_sd import events as ev
from colab_sd.errors import ColabSDError, DownloadError, InputError
from colab_sd.http import may_send_credentials
from colab_sd.partfile import PartState
from colab_sd.remote import RemoteFile
from colab_sd.transfer import TransferOptions, fetch
from servers import Route

FAST = TransferOptions(stall_timeout=2.0, connect_timeout=2.0, backoff_base=0.01, backoff_cap=0.1, retries=2,
                       chunk_size=64 * 1024)
BODY = os.urandom(2 * 1024 * 1024 + 77)
SHA = hashlib.sha256(BODY).hexdigest()


def get(url, dest, **kw):
    collect = ev.Collect()
    opts = kw.pop("options", FAST)
    result = fetch(RemoteFile(url=url, **kw.pop("remote", {})), dest, on_event=collect, options=opts, **kw)
    return result, collect


def files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def one_line(err):
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


# ---------------------------------------------------------------------------------------------- A2 empty bodies


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length-0", "chunked-empty"])
def test_a2_empty_200_is_never_a_model(server, tmp_path, chunked):
    server.route("/empty.safetensors", Route(body=b"", chunked=chunked, ranges=False))
    with pytest.raises(DownloadError, match="empty file") as info:
        get(server.url("/empty.safetensors"), tmp_path)
    one_line(info.value)
    assert files(tmp_path) == []


# ---------------------------------------------------------------------------------------------- A3 same name


def test_a3_same_name_from_another_link_never_replaces_the_first(server, tmp_path):
    other = os.urandom(len(BODY))  # same size, other bytes: size alone proves nothing
    server.route("/a/model.safetensors", Route(body=BODY))
    server.route("/b/model.safetensors", Route(body=other))
    first, _ = get(server.url("/a/model.safetensors"), tmp_path)
    second, events = get(server.url("/b/model.safetensors"), tmp_path)
    assert first.path.name == "model.safetensors" and second.path.name == "model-2.safetensors"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == SHA
    assert second.path.read_bytes() == other
    assert any("saved as model-2.safetensors" in e.message for e in events.of(ev.Info))
    again, _ = get(server.url("/a/model.safetensors"), tmp_path)  # the same bytes again: kept once
    assert again.skipped and again.path.name == "model.safetensors"
    assert files(tmp_path) == ["model-2.safetensors", "model.safetensors"]


# ---------------------------------------------------------------------------------------------- A4 the name


@pytest.mark.parametrize("how", ["206", "416"])
def test_a4_resumed_download_keeps_the_name_only_its_first_response_gave(server, tmp_path, how):
    route = server.route("/api/download/models/12345", Route(
        body=BODY, etag='"e1"', disposition='attachment; filename="RealName_v2.safetensors"',
        drop_at=[1_000_000] if how == "206" else []))
    url = server.url("/api/download/models/12345")
    if how == "206":
        with pytest.raises(DownloadError):
            get(url, tmp_path, options=FAST.replace(retries=0, connections=1))
    else:  # killed after the last byte, before the rename
        (tmp_path / "RealName_v2.safetensors.part").write_bytes(BODY)
        PartState(mode="single", name="RealName_v2.safetensors", origin=url, validator='"e1"',
                  total=len(BODY)).save(tmp_path / "RealName_v2.safetensors.part.json")
    route.disposition = None  # the resumed answer carries no name
    result, _ = get(url, tmp_path)
    assert result.path.name == "RealName_v2.safetensors"
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == SHA
    assert files(tmp_path) == ["RealName_v2.safetensors"]
    assert server.hits("/api/download/models/12345")[-1]["headers"]["Range"] != "bytes=0-"


def test_a4_within_one_run_a_retry_keeps_the_first_name(server, tmp_path):
    calls = []

    def flaky(h):  # first answer names the file and drops; later ones carry no name
        calls.append(1)
        start = int((h.headers.get("Range") or "bytes=0-")[6:].split("-")[0])
        body = BODY[start:]
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
        else:
            h.send_header("Content-Disposition", 'attachment; filename="Named.safetensors"')
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body[: 600_000] if len(calls) == 1 else body)
        h.close_connection = True

    server.route("/f", Route(handler=flaky))
    result, _ = get(server.url("/f"), tmp_path, options=FAST.replace(connections=1))
    assert result.path.name == "Named.safetensors" and len(calls) >= 2
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == SHA


# ---------------------------------------------------------------------------------------------- A5 / A6 / A7 secrets


def test_a5_a_token_echoed_into_the_name_never_reaches_the_file_name(server, tmp_path):
    secret = "tok-5ecret-echoed-98765"
    server.route("/dl", Route(body=BODY, disposition=f'attachment; filename="model_{secret}.safetensors"'))
    server.route("/r", Route(redirect=f"/files/{secret}.safetensors"))
    server.route(f"/files/{secret}.safetensors", Route(body=BODY))
    for path in ("/dl", "/r"):
        dest = tmp_path / path.strip("/")
        result, events = get(server.url(f"{path}?token={secret}"), dest)
        assert secret not in result.path.name and secret not in " ".join(files(dest))
        assert secret not in " ".join(e.to_json() for e in events.events)


@pytest.mark.parametrize("param", ["X-Goog-Signature", "X-Amz-Signature", "X-Amz-Security-Token", "Signature", "sig",
                                   "hf_token", "password", "api_key", "token", "key", "X-Amz-Credential"])
def test_a5_signed_url_credentials_are_redacted_by_rule(param):
    from colab_sd.tokens import redact, redact_url
    value = f"v4lue-for-{param.lower()}-0123456789"
    url = f"https://storage.example/bucket/m.safetensors?X-Amz-Date=20261130&{param}={value}&response-x=1"
    assert value not in redact_url(url) and "X-Amz-Date=20261130" in redact_url(url)
    assert value not in redact(f"failed: GET {url} (see {param}={value})")


def test_a6_credentials_only_over_https_or_loopback():
    assert may_send_credentials("https://civitai.com/api/x", "https://civitai.com/api/y")
    assert not may_send_credentials("http://civitai.com/api/x", "https://civitai.com/api/y")  # downgrade
    assert not may_send_credentials("http://civitai.com/api/x", "http://civitai.com/api/y")  # plain http
    assert not may_send_credentials("https://cdn.example/x", "https://civitai.com/api/y")  # another host
    assert may_send_credentials("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/y")  # a local endpoint


def test_a6_token_never_sent_over_plain_http_to_a_non_loopback_host(tmp_path):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    try:
        httpd = ThreadingHTTPServer(("127.0.0.2", 0), Handler)  # another address: not a configured loopback name
    except OSError:
        pytest.skip("127.0.0.2 is not routable here")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.2:{httpd.server_address[1]}/m.safetensors"
        result, _ = get(url, tmp_path, remote={"headers": {"Authorization": "Bearer plain-http-secret-123"}})
        assert hashlib.sha256(result.path.read_bytes()).hexdigest() == SHA
        assert seen and all(h is None for h in seen)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a7_a_token_in_an_exception_never_shows_in_str_repr_or_traceback(server, tmp_path):
    secret = "exc-secret-token-424242"
    server.route("/x", Route(redirect=f"ftp://files.example/model.safetensors?token={secret}"))
    with pytest.raises(ColabSDError) as info:
        get(server.url(f"/x?token={secret}"), tmp_path)
    err = info.value
    shown = str(err) + repr(err) + "".join(traceback.format_exception(type(err), err, err.__traceback__))
    assert secret not in shown
    one_line(err)


# ---------------------------------------------------------------------------------------------- A9 trickle


def test_a9_a_one_byte_per_second_trickle_is_a_stall(server, tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_SD_LOW_SPEED_TIME", "1")
    stop = threading.Event()

    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", "1192")
        h.end_headers()
        for _ in range(1192):
            if stop.is_set():
                return
            h.wfile.write(b"\x00")
            h.wfile.flush()
            time.sleep(1.0)  # one byte per second

    server.route("/slow.ckpt", Route(handler=trickle))
    started = time.monotonic()
    try:
        with pytest.raises(DownloadError, match="stalled") as info:
            get(server.url("/slow.ckpt"), tmp_path, options=TransferOptions(retries=1, backoff_base=0.01))
    finally:
        stop.set()
    assert "lowest speed" in one_line(info.value) and time.monotonic() - started < 15
    assert not (tmp_path / "slow.ckpt").exists()


# ---------------------------------------------------------------------------------------------- A11 - A13


@pytest.mark.parametrize("name, data", [("config.yaml", b"model:\n  target: ldm\n" * 500),
                                        ("model_index.json", b'{"_class_name": "X", "pad": "' + b"a" * 9000 + b'"}'),
                                        ("weights.safetensors", BODY)])
def test_a11_gzip_content_encoding_is_decoded_consistently(server, tmp_path, name, data):
    packed = gzip.compress(data)
    server.route("/" + name, Route(body=packed, headers={"Content-Encoding": "gzip"}))
    result, _ = get(server.url("/" + name), tmp_path)
    assert result.path.read_bytes() == data and files(tmp_path) == [name]
    assert server.hits("/" + name)[0]["headers"]["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://files.example/model.safetensors"])
def test_a12_redirect_to_another_scheme_is_refused_in_one_line(server, tmp_path, location):
    server.route("/r", Route(redirect=location))
    with pytest.raises(DownloadError, match="never follows") as info:
        get(server.url("/r"), tmp_path)
    one_line(info.value)
    assert files(tmp_path) == []


def test_a13_two_different_content_lengths_is_one_line(server, tmp_path):
    def twice(h):
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
        h.close_connection = True

    server.route("/two.safetensors", Route(handler=twice))
    with pytest.raises(DownloadError, match="malformed") as info:
        get(server.url("/two.safetensors"), tmp_path)
    one_line(info.value)
    assert files(tmp_path) == []


# ---------------------------------------------------------------------------------------------- A15 / A17


def test_a15_backslash_in_a_quoted_file_name_is_an_escape(server, tmp_path):
    server.route("/d", Route(body=b"<html>hi</html>", disposition='attachment; filename="f\\oo.html"'))
    result, _ = get(server.url("/d"), tmp_path)
    assert result.path.name == "foo.html"


def test_a17_progress_earns_retries_back(server, tmp_path):
    drops = list(range(300_000, len(BODY), 300_000))  # every connection closes after ~300 KB
    route = server.route("/drop.safetensors", Route(body=BODY, etag='"d"', drop_at=[300_000] * (len(drops) + 1)))
    result, _ = get(server.url("/drop.safetensors"), tmp_path, options=FAST.replace(retries=1, connections=1))
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == SHA
    assert len(server.hits("/drop.safetensors")) > 3 and route.drop_at == []


def test_a17_a_leading_dash_never_reaches_a_file_name(server, tmp_path):
    server.route("/d", Route(body=BODY, disposition='attachment; filename="--help.safetensors"'))
    result, _ = get(server.url("/d"), tmp_path)
    assert result.path.name == "__help.safetensors"


# ---------------------------------------------------------------------------------------------- two versions


def test_segments_never_mix_two_versions_whatever_the_server_does_with_if_range(server, tmp_path):
    """The file changes after the first request, and the server ignores If-Range: every later range answer
    is of the new version. The download must end as one version whole, never a mix."""
    new = os.urandom(len(BODY))
    served = {"n": 0}
    lock = threading.Lock()

    def careless(h):
        with lock:
            served["n"] += 1
            version, etag = (BODY, '"old"') if served["n"] == 1 else (new, '"new"')
        start, _, end = (h.headers.get("Range") or "bytes=0-")[6:].partition("-")
        start, end = int(start), int(end) if end else len(version) - 1
        body = version[start:end + 1]
        h.send_response(206)
        h.send_header("ETag", etag)
        h.send_header("Content-Range", f"bytes {start}-{end}/{len(version)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    server.route("/v.safetensors", Route(handler=careless))
    result, events = get(server.url("/v.safetensors"), tmp_path,
                         options=FAST.replace(connections=4, segment_min=256 * 1024))
    got = result.path.read_bytes()
    assert got in (BODY, new) and got == new
    assert any("changed" in e.message for e in events.of(ev.Info))
    assert files(tmp_path) == ["v.safetensors"]


def test_a_user_name_with_folders_is_an_input_error(server, tmp_path):
    server.route("/d", Route(body=BODY))
    with pytest.raises(InputError):
        get(server.url("/d"), tmp_path, name="../../x.safetensors")
