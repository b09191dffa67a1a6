"""Tokens panel and the account checks, against local fakes of CivitAI's /api/v1/me and the Hub's whoami."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("ipywidgets")

from servers import Route  # noqa: E402
from ui_helpers import all_states  # noqa: E402

from colab_sd import accounts  # noqa: E402
from colab_sd.errors import AuthError  # noqa: E402
from colab_sd.tokens import TokenStore  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402
from colab_sd.ui.tokens_panel import TokensPanel  # noqa: E402

CIVITAI_TOKEN = "fake-civitai-token-0123456789"
HF_TOKEN = "hf_fake-hf-token-0123456789"


def _json(h, status: int, data) -> None:
    body = json.dumps(data).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture
def services(server, monkeypatch):
    """One local server playing CivitAI (/api/v1/me) and the Hub (/api/whoami-v2)."""

    def civitai_me(h):
        if h.headers.get("Authorization") == f"Bearer {CIVITAI_TOKEN}":
            _json(h, 200, {"id": 42, "username": "civitai-tester", "tier": "free"})
        else:
            _json(h, 401, {"error": "Unauthorized", "message": "invalid API key"})

    def hf_whoami(h):
        if h.headers.get("Authorization") == f"Bearer {HF_TOKEN}":
            _json(h, 200, {"type": "user", "name": "hf-tester", "auth": {"type": "access_token"}})
        else:
            _json(h, 401, {"error": "Invalid credentials in Authorization header"})

    server.route("/api/v1/me", Route(handler=civitai_me))
    server.route("/api/whoami-v2", Route(handler=hf_whoami))
    monkeypatch.setenv("CIVITAI_ENDPOINT", server.url(""))
    monkeypatch.setenv("HF_ENDPOINT", server.url(""))
    return server


def test_check_civitai_and_huggingface_accounts(services, models):
    assert accounts.check("civitai", CIVITAI_TOKEN) == accounts.Account("civitai", "civitai-tester")
    assert accounts.check("huggingface", HF_TOKEN) == accounts.Account("huggingface", "hf-tester")
    with pytest.raises(AuthError, match=r"CivitAI rejected this token \(HTTP 401\)"):
        accounts.check("civitai", "fake-wrong-token-000000")
    with pytest.raises(AuthError, match=r"Hugging Face rejected this token \(HTTP 401\)"):
        accounts.check("huggingface", "hf_fake-wrong-token-000000")
    # The token travelled as a Bearer header only, never in a URL.
    for request in services.requests:
        assert CIVITAI_TOKEN not in request["full_path"] and HF_TOKEN not in request["full_path"]


def test_unreachable_service_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(Exception) as info:
        accounts.check("civitai", CIVITAI_TOKEN)
    assert "could not reach CivitAI" in str(info.value) and "\n" not in str(info.value)
    assert CIVITAI_TOKEN not in str(info.value)


def test_panel_shows_where_tokens_come_from(models, monkeypatch):
    monkeypatch.setenv("CIVITAI_TOKEN", CIVITAI_TOKEN)
    panel = TokensPanel(TokenStore(use_colab=False))
    assert "from environment CIVITAI_TOKEN" in panel.civitai.origin.value
    assert "Hugging Face token: not set" in panel.huggingface.origin.value
    assert CIVITAI_TOKEN not in str(all_states(panel.widget))


def test_typed_token_is_used_checked_and_cleared(services, models):
    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    row = app.tokens_panel.civitai
    row.check_button.click()
    assert "no CivitAI token to check" in row.result.value

    row.field.value = "fake-wrong-token-000000"
    row.check_button.click()
    assert row.field.value == ""
    assert "✗ CivitAI rejected this token (HTTP 401)" in row.result.value and "API keys" in row.result.value

    row.field.value = f"  {CIVITAI_TOKEN}  "
    row.use_button.click()
    assert row.field.value == "" and "entered in this panel" in row.origin.value
    # The download panel uses the same store: what was entered here is what downloads send.
    assert app.download.tokens.get("civitai").secret.reveal() == CIVITAI_TOKEN
    row.check_button.click()
    assert "✓ valid: belongs to civitai-tester" in row.result.value

    hf = app.tokens_panel.huggingface
    hf.field.value = HF_TOKEN
    hf.check_button.click()
    assert hf.field.value == "" and "✓ valid: belongs to hf-tester" in hf.result.value

    # Nothing a notebook could save holds a token.
    state = str(all_states(app.widget))
    assert CIVITAI_TOKEN not in state and HF_TOKEN not in state


def test_use_with_empty_field_asks_for_a_token(models):
    panel = TokensPanel(TokenStore(use_colab=False))
    panel.huggingface.use_button.click()
    assert "paste a token in the field first" in panel.huggingface.result.value
