"""The newcomer's loop through the widgets against a fake CivitAI: a model that needs a token fails with what to
do, the token goes in the Tokens panel and checks out, the download then lands in lora/ with its trigger words,
and the Library and Generate panels offer it."""
from __future__ import annotations

import hashlib

import pytest

pytest.importorskip("ipywidgets")

from servers import send_json  # noqa: E402
from fakes.civitai import TOKEN, FakeCivitai, FakeFile  # noqa: E402
from safetensors_factory import make_lora  # noqa: E402
from ui_helpers import all_states  # noqa: E402

from colab_sd.tokens import TokenStore  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402


class CivitaiWithAccounts(FakeCivitai):
    """The fake CivitAI plus `/api/v1/me`, the current-user endpoint the Tokens panel's check calls."""

    def dispatch(self, h) -> None:
        if h.url_path.rstrip("/") == "/api/v1/me":
            if h.headers.get("Authorization") == f"Bearer {self.token}":
                return send_json(h, 200, {"id": 7, "username": "newcomer", "tier": "free"})
            return send_json(h, 401, {"error": "Unauthorized"})
        return super().dispatch(h)


@pytest.fixture
def civitai(monkeypatch):
    with CivitaiWithAccounts() as fake:
        monkeypatch.setenv("CIVITAI_ENDPOINT", fake.base)
        yield fake


def test_token_download_library_generate_loop(civitai, models, tmp_path):
    data = make_lora(tmp_path / "film.safetensors").read_bytes()
    civitai.add_version(model_id=5001, version_id=6001, model_name="Film Look", model_type="LORA",
                        files=[FakeFile(7001, "film_look_v1.safetensors", data)], base_model="SD 1.5",
                        trained_words=["filmic", "grainy"], auth="redirect")
    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    link = f"{civitai.base}/models/5001/film-look?modelVersionId=6001"

    app.download.urls.value = link
    app.download.button.click()
    row = app.download.rows[0]
    assert row.state == "error" and row.bar.bar_style == "danger"
    assert "needs a CivitAI API token" in row.status.value and "Tokens panel" in row.status.value

    tokens = app.tokens_panel.civitai
    tokens.field.value = TOKEN
    tokens.check_button.click()
    assert "✓ valid: belongs to newcomer" in tokens.result.value and "entered in this panel" in tokens.origin.value

    app.download.button.click()
    row = app.download.rows[0]
    assert row.state == "done" and row.bar.value == 1.0, row.status.value
    path = models / "lora" / "film_look_v1.safetensors"
    assert row.path == path and hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert f"in {models / 'lora'}" in row.status.value

    entry = app.library.entries[0]
    assert (entry.kind, entry.name, entry.trigger_words) == ("lora", "film_look_v1.safetensors", ["filmic", "grainy"])
    assert "filmic, grainy" in app.library.table.value and "SD 1.5" in app.library.table.value

    if app.generate is not None:  # the generation stack is installed: the LoRA is offered with its words
        assert [value for _label, value in app.generate.lora_choice.options] == [None, "film_look_v1.safetensors"]
        app.generate.lora_choice.value = "film_look_v1.safetensors"  # choosing it adds it: what is shown is used
        app.generate.lora_rows[0].word_buttons[0].click()
        assert app.generate.prompt.value == "filmic"

    # The token reached CivitAI only as a header; nothing on screen or in widget state shows it.
    assert TOKEN not in str(all_states(app.widget))
    assert all(TOKEN not in r["path"] and TOKEN not in str(r["query"]) for r in civitai.requests)
    assert any(r["path"] == "/api/v1/me" and r["headers"].get("Authorization") == f"Bearer {TOKEN}"
               for r in civitai.requests)
