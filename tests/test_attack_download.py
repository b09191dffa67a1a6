"""Faults found by attacking the download and CivitAI halves from outside (a fresh pair of eyes, after issue 13):
each input ran against a real local server, failed before its fix, and holds now."""
import hashlib
import os

import pytest

import colab_sd
from colab_sd import events as ev
from colab_sd.errors import ColabSDError, DownloadError
from colab_sd.remote import RemoteFile
from colab_sd.transfer import TransferOptions, fetch
from servers import Route, send

FAST = TransferOptions(stall_timeout=2.0, connect_timeout=2.0, backoff_base=0.01, backoff_cap=0.1, retries=2,
                       chunk_size=64 * 1024)


def one_line(err) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


# ---------------------------------------------------------------------------------------------- file vs sidecar


def test_a_model_named_like_another_models_sidecar_is_never_overwritten(server, models):
    """A server names its file `x.safetensors.json`; a later download is `x.safetensors`, whose sidecar
    `x.safetensors.json` used to overwrite the first model's bytes. A name whose sidecar slot is another
    file is taken: the newcomer gets a distinct name, both files and both sidecars survive."""
    first, second = os.urandom(3000), os.urandom(4000)
    server.route("/a", Route(body=first, disposition='attachment; filename="x.safetensors.json"'))
    server.route("/b", Route(body=second, disposition='attachment; filename="x.safetensors"'))
    got_first = colab_sd.download(server.url("/a"), models_dir=models, kind="other")
    got_second = colab_sd.download(server.url("/b"), models_dir=models, kind="other")
    assert got_first.read_bytes() == first
    assert got_second.read_bytes() == second
    assert got_second.name != "x.safetensors"
    assert (got_second.parent / (got_second.name + ".json")).is_file()
    assert got_first.read_bytes() == first  # still the model, not a sidecar


def test_a_sidecar_name_after_its_model_gets_a_distinct_name(server, models):
    """The other order: `x.safetensors` (and its sidecar) first, then a file served as `x.safetensors.json`."""
    model, other = os.urandom(3000), os.urandom(2500)
    server.route("/m", Route(body=model, disposition='attachment; filename="x.safetensors"'))
    server.route("/j", Route(body=other, disposition='attachment; filename="x.safetensors.json"'))
    got_model = colab_sd.download(server.url("/m"), models_dir=models, kind="other")
    got_other = colab_sd.download(server.url("/j"), models_dir=models, kind="other")
    assert got_other.name != "x.safetensors.json" and got_other.read_bytes() == other
    assert got_model.read_bytes() == model
    assert '"sha256"' in (got_model.parent / "x.safetensors.json").read_text()


# ---------------------------------------------------------------------------------------------- empty file, 416


def test_an_empty_file_behind_a_range_honouring_cdn_is_one_error_at_once(server, tmp_path):
    """A CDN answers `Range: bytes=0-` on an empty object with 416 `bytes */0`: that means "empty", not
    "your partial file does not fit" (which was retried 9 times and then said so)."""
    server.route("/empty.safetensors", Route(body=b""))
    with pytest.raises(DownloadError, match="empty file") as info:
        fetch(RemoteFile(url=server.url("/empty.safetensors")), tmp_path, options=FAST)
    one_line(info.value)
    assert len(server.hits("/empty.safetensors")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_empty_config_behind_a_range_honouring_cdn_is_saved(server, tmp_path):
    server.route("/notes.txt", Route(body=b""))
    result = fetch(RemoteFile(url=server.url("/notes.txt")), tmp_path, options=FAST)
    assert result.path.name == "notes.txt" and result.path.read_bytes() == b""
    assert result.sha256 == hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------------------------------------- unreadable answers


def test_a_server_with_too_many_headers_is_one_line_without_retries(server, tmp_path):
    """More than http.client's 100 headers was retried 9 times as "cannot reach 127.0.0.1"."""
    def many_headers(h):
        h.send_response(200)
        for i in range(150):
            h.send_header(f"X-Filler-{i}", "a")
        h.send_header("Content-Length", "4")
        h.end_headers()
        h.wfile.write(b"data")

    server.route("/many.bin", Route(handler=many_headers))
    with pytest.raises(DownloadError, match="malformed answer") as info:
        fetch(RemoteFile(url=server.url("/many.bin")), tmp_path, options=FAST)
    one_line(info.value)
    assert len(server.hits("/many.bin")) == 1
    assert not any(p.name == "many.bin" for p in tmp_path.iterdir())


def test_a_header_line_too_long_is_one_line_without_retries(server, tmp_path):
    def long_line(h):
        h.send_response(200)
        h.send_header("X-Long", "a" * 70000)
        h.send_header("Content-Length", "4")
        h.end_headers()
        h.wfile.write(b"data")

    server.route("/long.bin", Route(handler=long_line))
    with pytest.raises(ColabSDError) as info:
        fetch(RemoteFile(url=server.url("/long.bin")), tmp_path, options=FAST)
    assert "malformed answer" in one_line(info.value)
    assert len(server.hits("/long.bin")) == 1


def test_redirect_without_location_is_one_line(server, tmp_path):
    server.route("/noloc", Route(handler=lambda h: send(h, 302, b"moved")))
    with pytest.raises(ColabSDError) as info:
        fetch(RemoteFile(url=server.url("/noloc")), tmp_path, options=FAST)
    one_line(info.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- CivitAI endpoint


@pytest.mark.parametrize("suffix", ["/", "/api/v1", "/api/v1/", "/api"])
def test_civitai_endpoint_given_as_the_api_base_still_works(civitai, models, monkeypatch, suffix):
    """`CIVITAI_ENDPOINT=https://civitai.com/api/v1` (how many tools document it) asked `/api/v1/api/v1/…` and
    said the model "does not exist or was removed"."""
    from fakes.civitai import FakeFile

    data = os.urandom(5000)
    civitai.add_version(model_id=7, version_id=71, model_name="Lantern", model_type="LORA",
                        files=[FakeFile(701, "lantern.safetensors", data)])
    monkeypatch.setenv("CIVITAI_ENDPOINT", civitai.base + suffix)
    path = colab_sd.download("https://civitai.com/models/7", models_dir=models)
    assert path.name == "lantern.safetensors" and path.read_bytes() == data
    from colab_sd.accounts import civitai_endpoint

    assert civitai_endpoint() == civitai.base


# ---------------------------------------------------------------------------------------------- CLI usage errors


@pytest.mark.parametrize("option", [["--limit", "0"], ["--limit", "500"], ["--sort", "banana"], ["--nsfw", "banana"],
                                    ["--type", "banana"], ["--period", "banana"]])
def test_search_option_errors_are_usage_errors(option, capsys):
    """A bad search option exited 1 (a failure) where README promises 2 for usage errors (as `download --type`).
    Checked before any request: no server is needed."""
    from colab_sd import cli

    assert cli.main(["search", "x", *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("colab-sd: error:") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- the CLI bar


def test_the_bar_after_a_resume_does_not_show_the_part_as_speed():
    """Resuming 1 GB of a 3 GB file: the bar's first line said 19.8GB/s (the .part counted as bytes received
    in no time). The resumed bytes are the bar's start; only new bytes make its speed."""
    import io
    import time

    from tqdm import tqdm

    out = io.StringIO()
    bar = ev.TqdmBar(file=out, tqdm_class=tqdm)
    bar(ev.Progress(job="j", downloaded=0, total=None, speed=0.0, eta=None))
    bar(ev.Progress(job="j", downloaded=1 << 30, total=3 << 30, speed=0.0, eta=None, name="m.safetensors"))
    time.sleep(0.05)
    bar(ev.Progress(job="j", downloaded=(1 << 30) + 50_000, total=3 << 30, speed=0.0, eta=None, name="m.safetensors"))
    shown = out.getvalue()
    assert "m.safetensors" in shown and "1.00G/3.00G" in shown
    assert "GB/s" not in shown and "TB/s" not in shown
    bar(ev.Error(job="j", message="failed"))  # the bar is closed on its own line before the error is printed
    assert out.getvalue().endswith("\n")


# ---------------------------------------------------------------------------------------------- two versions


def test_no_validator_means_no_mix_of_two_versions(server, tmp_path):
    """A server with no ETag / Last-Modified whose file changes after the first request: its segments came
    from both versions and the mix was saved under the final name (no hash to catch it). Without a version
    tag or a known sha256 the file comes over one stream: one version, whole."""
    import re
    import threading

    old, new = os.urandom(600_000), os.urandom(600_000)
    seen, lock = [0], threading.Lock()

    def changing(h):
        with lock:
            seen[0] += 1
            body = old if seen[0] == 1 else new
        m = re.match(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
        start = int(m.group(1)) if m else 0
        end = int(m.group(2)) if m and m.group(2) else len(body) - 1
        piece = body[start:end + 1]
        h.send_response(206 if m else 200)
        if m:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(piece)))
        h.end_headers()
        h.wfile.write(piece)

    server.route("/changing.bin", Route(handler=changing))
    wide = FAST.replace(segment_min=64 * 1024, connections=4, chunk_size=16 * 1024)
    result = fetch(RemoteFile(url=server.url("/changing.bin")), tmp_path, options=wide)
    assert result.path.read_bytes() in (old, new)


# ---------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("served, saved", [("CON.tar.gz", "_CON.tar.gz"), ("con .safetensors", "_con .safetensors"),
                                           ("Lpt9.model.safetensors", "_Lpt9.model.safetensors"),
                                           ("console.safetensors", "console.safetensors")])
def test_windows_device_names_whatever_follows_the_first_dot(server, tmp_path, served, saved):
    """`CON.tar.gz` / `con .safetensors` were kept as is: Windows (a synced Drive) cannot hold them either."""
    body = os.urandom(2000)
    server.route("/f", Route(body=body, disposition=f'attachment; filename="{served}"'))
    result = fetch(RemoteFile(url=server.url("/f")), tmp_path, options=FAST)
    assert result.path.name == saved and result.path.read_bytes() == body


# ---------------------------------------------------------------------------------------------- 206 without a range


def test_a_206_that_does_not_say_which_bytes_it_holds(server, tmp_path):
    """206 without Content-Range (a broken proxy) was taken for "resumed at the wrong place", retried with the same
    answer and given up. For `bytes=0-` it is the whole file over one stream; on a resume the .part is restarted."""
    import re
    import threading

    body = os.urandom(300_000)
    calls, lock = [0], threading.Lock()

    def no_content_range(h):
        with lock:
            calls[0] += 1
            first = calls[0] == 1
        m = re.match(r"bytes=(\d+)-", h.headers.get("Range") or "")
        start = int(m.group(1)) if m else 0
        piece = body[start:]
        h.send_response(206)
        if first:  # the first answer is proper but breaks off: the rerun resumes
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.send_header("Content-Length", str(len(piece)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(piece[:100_000] if first else piece)

    server.route("/nocr.bin", Route(handler=no_content_range))
    result = fetch(RemoteFile(url=server.url("/nocr.bin")), tmp_path, options=FAST.replace(retries=3))
    assert result.path.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nocr.bin"]


# ---------------------------------------------------------------------------------------------- links that cannot be


@pytest.mark.parametrize("link", [123, b"https://civitai.com/models/1", "https://[::1", "http://h:99999/x",
                                  "civitai:0", "urn:air:sd1:lora:civitai:0@1", "https://civitai.com/models/0",
                                  "https://civitai.com/models/99999999999999999999",
                                  "https://civitai.com/models/5?modelVersionId=0"])
def test_links_that_cannot_be_are_input_errors_before_any_request(link, models, monkeypatch):
    """An int, an unclosed IPv6 bracket, a port out of range ended as "download of … failed: AttributeError /
    ValueError"; CivitAI ids outside 1..2^31-1 were sent to CivitAI (which answers 400). Each is the user's to fix."""
    from colab_sd.errors import InputError

    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would say so
    with pytest.raises(InputError) as info:
        colab_sd.download(link, models_dir=models)
    text = one_line(info.value)
    assert "Error:" not in text and "connection" not in text
