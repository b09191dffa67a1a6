"""Issue 13 through `colab_sd.download` and `colab-sd models`: what lands in the library (names, sidecars,
events, the listing) when two links share a name, a link carries signed-URL credentials, or a library
inside the client fails."""
import json

import pytest

import colab_sd
from colab_sd import cli
from colab_sd.errors import ColabSDError
from colab_sd.events import Collect, Info
from colab_sd.library import read_sidecar
from fakes.fixtures import file_sha256, sha256
from servers import Route


def test_a3_same_name_other_size_under_a_type_keeps_both(server, models, model_bytes):
    server.route("/one/model.safetensors", Route(body=model_bytes["lora"]))
    server.route("/two/model.safetensors", Route(body=model_bytes["lora_xl"]))
    first = colab_sd.download(server.url("/one/model.safetensors"), kind="lora", models_dir=models)
    events = Collect()
    second = colab_sd.download(server.url("/two/model.safetensors"), kind="lora", models_dir=models,
                               on_event=events)
    assert first == models / "lora" / "model.safetensors" and second == models / "lora" / "model-2.safetensors"
    assert file_sha256(first) == sha256(model_bytes["lora"]) and file_sha256(second) == sha256(model_bytes["lora_xl"])
    assert any("model-2.safetensors" in e.message for e in events.of(Info))
    assert read_sidecar(first)["source"] == server.url("/one/model.safetensors")  # a sidecar belongs to one file
    assert read_sidecar(second)["source"] == server.url("/two/model.safetensors")


SIGNED = {"X-Goog-Signature": "g00gsig-abcdef0123456789", "X-Amz-Signature": "amzsig-abcdef0123456789",
          "X-Amz-Security-Token": "amztok-abcdef0123456789", "Signature": "cfsig-abcdef0123456789",
          "sig": "azsig-abcdef0123456789", "hf_token": "hf-fake-abcdef0123456789",
          "password": "pw-abcdef0123456789", "api_key": "key-abcdef0123456789"}


def test_a5_signed_url_credentials_never_reach_sidecar_events_or_listing(server, models, model_bytes, capsys):
    server.route("/signed/style.safetensors", Route(body=model_bytes["lora"]))
    query = "&".join(f"{k}={v}" for k, v in SIGNED.items())
    events = Collect()
    path = colab_sd.download(server.url(f"/signed/style.safetensors?X-Amz-Date=20261130&{query}"), models_dir=models,
                             on_event=events)
    sidecar = path.with_name(path.name + ".json").read_text()
    assert cli.main(["models", "--dir", str(models), "--json"]) == 0
    listing = capsys.readouterr().out
    shown = sidecar + listing + " ".join(e.to_json() for e in events.events) + path.name
    for value in SIGNED.values():
        assert value not in shown
    assert "X-Amz-Date=20261130" in sidecar  # only credentials go, the rest of the link stays
    json.loads(listing)


def test_a7_the_api_raises_only_colab_sd_errors(server, models, monkeypatch):
    """A library's own exception inside a download (here raised while resolving) becomes one of ours, one line,
    token-free."""
    import colab_sd.sources as sources

    def broken(url, tokens=None, source=None):
        raise RuntimeError(f"library internals for {url}")

    monkeypatch.setattr(sources, "resolve", broken)
    with pytest.raises(ColabSDError) as info:
        colab_sd.download(server.url("/x.safetensors?token=api-secret-0123456789"), models_dir=models)
    assert "api-secret-0123456789" not in str(info.value) + repr(info.value)
    assert "RuntimeError" in str(info.value) and "\n" not in str(info.value)
