"""Tokens, events and the library layout: the small pieces everything else leans on."""
import json
import os
from pathlib import Path

import pytest

from colab_sd import events as ev
from colab_sd import library, tokens
from colab_sd.errors import InputError

CANARY = "fake-canary-token-5f2b9c1e7d"


# ---------------------------------------------------------------------------------------------- tokens


def test_lookup_order_explicit_then_env(monkeypatch):
    for name in ("CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert tokens.lookup("civitai") is None
    monkeypatch.setenv("CIVITAI_API_KEY", "env-key-123456")
    tok = tokens.lookup("civitai")
    assert tok.secret.reveal() == "env-key-123456" and tok.origin == "environment CIVITAI_API_KEY"
    monkeypatch.setenv("CIVITAI_TOKEN", "env-token-123456")
    assert tokens.lookup("civitai").origin == "environment CIVITAI_TOKEN"
    tok = tokens.lookup("civitai", explicit="  typed-123456 ")
    assert tok.secret.reveal() == "typed-123456" and tok.origin == "argument"
    monkeypatch.setenv("HF_TOKEN", "hf-env-123456")
    assert tokens.lookup("huggingface").origin == "environment HF_TOKEN"


def test_colab_secret_is_last_and_only_in_colab(monkeypatch):
    """A fake `google.colab` package on sys.path stands in for Colab's own."""
    import sys
    import types
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert tokens.lookup("huggingface") is None  # no google.colab here: nothing asked
    google = types.ModuleType("google")
    google.__path__ = []
    colab = types.ModuleType("google.colab")
    colab.__path__ = []
    userdata = types.ModuleType("google.colab.userdata")

    class SecretNotFoundError(Exception):
        pass

    def get(name):
        if name == "HF_TOKEN":
            return "colab-secret-123456"
        raise SecretNotFoundError(name)

    userdata.get = get
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    monkeypatch.setattr(tokens, "in_colab", lambda: True)
    tok = tokens.lookup("huggingface")
    assert tok.origin == "Colab secret HF_TOKEN" and tok.secret.reveal() == "colab-secret-123456"
    assert tokens.lookup("civitai") is None  # SecretNotFoundError means "not set"
    monkeypatch.setenv("HF_TOKEN", "env-wins-123456")
    assert tokens.lookup("huggingface").origin == "environment HF_TOKEN"


def test_secret_never_shows_itself():
    secret = tokens.Secret(CANARY)
    token = tokens.Token(secret, "argument")
    store = tokens.TokenStore(civitai=CANARY, use_colab=False)
    for text in (repr(secret), str(secret), f"{secret}", repr(token), str(token), repr(store)):
        assert CANARY not in text
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(secret)


def test_redact_urls_and_known_values():
    tokens.remember_secret(CANARY)
    assert tokens.redact_url(f"https://civitai.com/api/download/models/1?token={CANARY}&type=Model") == \
        "https://civitai.com/api/download/models/1?token=***&type=Model"
    assert tokens.redact_url("https://user:pw@host/x") == "https://***@host/x"
    text = tokens.redact(f"GET https://x/y?token=abc&b=2 failed; Authorization: Bearer {CANARY} and {CANARY}")
    assert CANARY not in text and "token=***" in text and "Bearer ***" in text


# ---------------------------------------------------------------------------------------------- events


def test_throttle_passes_final_and_flushes_pending():
    clock = [0.0]
    got = []
    throttle = ev.Throttle(got.append, interval=0.5, clock=lambda: clock[0])
    for i in range(1, 11):
        clock[0] = i * 0.1
        throttle(ev.Progress(downloaded=i, total=100, speed=1.0, eta=1.0))
    # t=0.1 passes; the next pass is due 0.5 s later (t=0.6); the others wait
    assert [e.downloaded for e in got] == [1, 6]
    throttle(ev.Info("done soon"))
    assert [getattr(e, "downloaded", None) for e in got] == [1, 6, 10, None]  # pending 10 flushed before info
    throttle(ev.Progress(downloaded=100, total=100, speed=1.0, eta=0.0))
    assert got[-1].downloaded == 100  # 100 % always passes


def test_guard_and_fanout_survive_a_broken_listener():
    seen = []

    def broken(event):
        raise RuntimeError("boom")

    ev.Fanout(broken, seen.append)(ev.Info("x"))
    assert len(seen) == 1
    ev.Throttle(broken)(ev.Info("y"))  # no exception


def test_event_json_shapes():
    assert json.loads(ev.Progress(downloaded=5, total=None, speed=2.5, eta=None, job="j").to_json()) == {
        "status": "progress", "job": "j", "downloaded": 5, "total": None, "speed": 2.5, "eta": None, "unit": "B"}
    assert ev.Error(message="m").to_dict() == {"status": "error", "message": "m"}
    assert ev.Cancelled().to_dict()["status"] == "cancelled"
    assert ev.StepProgress(step=1, total=2, rate=3.0, eta=0.3, preview=object()).to_dict()["has_preview"] is True


def test_meter_speed_and_eta():
    clock = [0.0]
    meter = ev.Meter(clock=lambda: clock[0])
    clock[0] = 1.0
    meter.progress(100, 1000)
    clock[0] = 2.0
    p = meter.progress(200, 1000)
    assert p.speed == 100.0 and p.eta == 8.0
    assert meter.progress(300, None).eta is None


# ---------------------------------------------------------------------------------------------- library


def test_models_root_order(monkeypatch, tmp_path):
    monkeypatch.delenv("COLAB_SD_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert library.models_root() == tmp_path / "models"
    monkeypatch.setattr(library, "in_colab", lambda: True)
    assert library.models_root() == Path("/content/models")
    monkeypatch.setenv("COLAB_SD_HOME", str(tmp_path / "home"))
    assert library.models_root() == tmp_path / "home"
    assert library.models_root(tmp_path / "x") == tmp_path / "x"


def test_kinds_and_aliases(tmp_path):
    assert library.normalize_kind("LORA") == "lora" and library.normalize_kind("LyCORIS") == "lora"
    assert library.normalize_kind("TextualInversion") == "embedding" and library.normalize_kind("auto") is None
    with pytest.raises(InputError, match="checkpoint, lora"):
        library.normalize_kind("wizard")
    root = library.ensure_layout(tmp_path / "m")
    assert sorted(p.name for p in root.iterdir()) == sorted(library.KINDS)


def test_listing_with_sidecars_and_diffusers_folders(tmp_path):
    root = library.ensure_layout(tmp_path)
    (root / "lora" / "style.safetensors").write_bytes(b"x" * 10)
    library.write_sidecar(root / "lora" / "style.safetensors", {
        "source": f"https://civitai.com/api/download/models/1?token={CANARY}", "sha256": "ab" * 32,
        "trigger_words": ["neon"], "base_model": "SD 1.5"})
    (root / "lora" / "style.safetensors.part").write_bytes(b"partial")
    pipe = root / "checkpoint" / "tiny-sd"
    (pipe / "unet").mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    (pipe / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"y" * 5)
    entries = library.list_models(root)
    assert [(e.kind, e.name) for e in entries] == [("checkpoint", "tiny-sd"), ("lora", "style.safetensors")]
    lora = entries[1]
    assert lora.trigger_words == ["neon"] and lora.base_model == "SD 1.5" and lora.stem == "style"
    assert CANARY not in (root / "lora" / "style.safetensors.json").read_text()
    assert library.find_model(root, "lora", "STYLE").path == lora.path
    (root / "lora" / "sub").mkdir()
    (root / "lora" / "sub" / "deep.safetensors").write_bytes(b"z")
    assert library.find_model(root, "lora", "sub/deep").name == "sub/deep.safetensors"
    assert library.find_model(root, "lora", "deep").name == "sub/deep.safetensors"
