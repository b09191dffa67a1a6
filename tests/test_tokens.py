"""Tokens: lookup order (argument, environment, Colab secret), secrets that never show themselves, redaction."""
import pytest

from colab_sd import tokens

CANARY = "fake-canary-token-5f2b9c1e7d"


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
