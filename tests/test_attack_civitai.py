"""CivitAI's download answers as the reference describes them (civitai-api.md §7), against a fake whose download
endpoint is scripted: each failed before its fix (a 92 s retry loop for the hourly limit, a generic 524, "needs a
token" for disabled downloads and archived versions)."""
import os
import time

import pytest

import colab_sd
from colab_sd.errors import AuthError, DownloadError, NotFoundError
from fakes.civitai import FakeCivitai, FakeFile
from servers import send, send_json


class ScriptedCivitai(FakeCivitai):
    """The fake CivitAI whose `/api/download/…` answers with `script(h)` when set."""

    script = None

    def dispatch(self, h):
        if h.url_path.startswith("/api/download/") and self.script:
            return self.script(h)
        return super().dispatch(h)


@pytest.fixture
def civ(monkeypatch):
    with ScriptedCivitai() as fake:
        monkeypatch.setenv("CIVITAI_ENDPOINT", fake.base)
        for name in ("CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        fake.add_version(model_id=2, version_id=21, model_name="Lantern", model_type="LORA",
                         files=[FakeFile(201, "lantern.safetensors", os.urandom(4000))])
        yield fake


def _download(tmp_path):
    return colab_sd.download("https://civitai.com/models/2", models_dir=tmp_path / "models")


def _nothing_saved(tmp_path):
    return not [p for p in (tmp_path / "models").rglob("*.safetensors")]


def test_hourly_download_limit_is_one_line_at_once(civ, tmp_path):
    civ.script = lambda h: send_json(h, 429, {"error": "We've noticed an unusual amount of downloading from your "
                                                       "account. Please try again later."})
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"per hour.*wait") as info:
        _download(tmp_path)
    assert "unusual amount of downloading" in str(info.value) and "\n" not in str(info.value)
    assert len(civ.hits("/api/download/")) == 1 and time.monotonic() - started < 30
    assert _nothing_saved(tmp_path)


def test_a_524_says_it_is_civitais_side_after_a_few_tries(civ, tmp_path):
    civ.script = lambda h: send(h, 524, b"<html><title>A timeout occurred</title></html>", "text/html")
    with pytest.raises(DownloadError, match=r"CivitAI is having trouble on its side \(HTTP 524\), not your connection"):
        _download(tmp_path)
    assert 1 < len(civ.hits("/api/download/")) <= 4
    assert _nothing_saved(tmp_path)


def test_disabled_downloads_do_not_ask_for_a_token(civ, tmp_path):
    civ.script = lambda h: send_json(h, 401, {"error": "Unauthorized", "message": "The creator has disabled downloads"})
    with pytest.raises(AuthError, match="disabled downloads") as info:
        _download(tmp_path)
    assert "CIVITAI_TOKEN" not in str(info.value)


def test_an_archived_version_says_archived(civ, tmp_path):
    civ.script = lambda h: send_json(h, 410, {"error": "Model archived"})
    with pytest.raises(NotFoundError, match=r"archived \(410\)"):
        _download(tmp_path)


def test_a_429_with_retry_after_is_still_waited_for(civ, tmp_path):
    answers = [lambda h: send(h, 429, b"slow down", headers={"Retry-After": "0"})]

    def first_busy(h):
        if answers:
            return answers.pop()(h)
        civ.script = None
        return civ.dispatch(h)

    civ.script = first_busy
    events = []
    path = colab_sd.download("https://civitai.com/models/2", models_dir=tmp_path / "models", on_event=events.append)
    assert path.name == "lantern.safetensors" and path.stat().st_size == 4000
    assert any("CivitAI asks to slow down (429, retry after 0 s)" in getattr(e, "message", "") for e in events)


# ---------------------------------------------------------------------------------------------- odd answers


ODD_VERSIONS = {
    "trained-words-of-any-type": {"id": 5, "modelId": 1, "name": "v", "trainedWords": ["glow", None, 3, {"x": 1}, " "],
                                  "model": {"name": "M", "type": "LORA"},
                                  "files": [{"id": 9, "name": "a.safetensors", "sizeKB": "4.8828125"}]},
    "nulls-everywhere": {"id": 5, "modelId": 1, "name": None, "baseModel": None, "trainedWords": None, "model": None,
                         "images": None, "files": [None, {"id": 9, "name": "a.safetensors", "type": None,
                                                          "metadata": None, "hashes": None, "primary": True}]},
    "strings-for-objects": {"id": 5, "modelId": 1, "model": "LORA", "images": "none", "files": [
        {"id": 9, "name": "a.safetensors", "metadata": "SafeTensor", "hashes": ["SHA256"]}]},
}


@pytest.mark.parametrize("answer", list(ODD_VERSIONS.values()), ids=list(ODD_VERSIONS))
def test_odd_version_answers_still_download(server, models, monkeypatch, answer):
    """The reference says to read every field defensively; `trainedWords: [null, 3]` ended in
    "download failed: AttributeError" and a `files` entry of null likewise."""
    from colab_sd.civitai.client import clear_cache
    from servers import Route

    clear_cache()
    monkeypatch.setenv("CIVITAI_ENDPOINT", server.base)
    data = os.urandom(5000)
    server.route("/file", Route(body=data, disposition='attachment; filename="served.safetensors"'))
    server.route("/api/download/models/5", Route(redirect=server.url("/file"), redirect_status=307))
    server.route("/api/v1/model-versions/5", Route(handler=lambda h: send_json(h, 200, answer)))
    path = colab_sd.download("civitai:5", models_dir=models)
    assert path.read_bytes() == data
    side = (path.parent / (path.name + ".json")).read_text()
    assert "null, 3" not in side


def test_an_answer_that_is_not_an_object_is_one_line(server, models, monkeypatch):
    from colab_sd.civitai.client import clear_cache
    from servers import Route

    clear_cache()
    monkeypatch.setenv("CIVITAI_ENDPOINT", server.base)
    server.route("/api/v1/model-versions/5", Route(handler=lambda h: send_json(h, 200, [1, 2, 3])))
    with pytest.raises(DownloadError, match="not a JSON object") as info:
        colab_sd.download("civitai:5", models_dir=models)
    assert "AttributeError" not in str(info.value)


# ---------------------------------------------------------------------------------------------- words, not classes


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_civitai_and_image_hosts_are_sentences(monkeypatch, capsys, tmp_path):
    """"could not reach CivitAI (ConnectionError)", "could not fetch the image … (ConnectionError)": class names,
    where the house rule asks for a sentence."""
    import re

    from colab_sd import cli
    from colab_sd.civitai import client

    monkeypatch.setattr(client, "BACKOFF", 0.0)
    port = _closed_port()
    monkeypatch.setenv("CIVITAI_ENDPOINT", f"http://127.0.0.1:{port}")
    assert cli.main(["search", "x"]) == 1
    assert cli.main(["recreate", f"http://127.0.0.1:{port}/x.png", "--no-generate", "--dir", str(tmp_path)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("colab-sd: error:")]
    assert len(lines) == 2 and all("no connection to the host" in line for line in lines)
    assert not any(re.search(r"\b[A-Z]\w*(Error|Exception)\b", line) for line in lines), lines


def test_a_request_civitai_refuses_is_one_line_with_its_words(civ, capsys):
    """A cursor from elsewhere (CivitAI answers 400 with its validation error) said "could not reach CivitAI
    (ConnectionError)" from the fake and "HTTP 400 … try again later" from a real 400: trying again cannot help."""
    from colab_sd import cli

    assert cli.main(["search", "x", "--cursor", "../../etc"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused the request" in err and "Expected number" in err
    assert "try again later" not in err
