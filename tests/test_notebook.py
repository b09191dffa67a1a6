"""The Colab notebook runs top to bottom in a real kernel (nbclient) and renders the app.

`COLAB_SD_INSTALL_FROM` makes its one cell install this checkout instead of the pinned release.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "colab_sd.ipynb"


def test_notebook_is_one_thin_cell_with_a_pinned_install_and_a_drive_checkbox():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 1 and nb.cells[0].cell_type == "markdown"
    source = code[0].source
    assert "use_google_drive = False  #@param {type:\"boolean\"}" in source
    assert "git+https://github.com/colab-sd/colab-sd@v0.1.0" in source  # a pinned ref, not a branch
    assert "colab-sd[notebook] @ git+" in source  # upscalers, GGUF, mask painting; never the torch-pulling extra
    assert "[generation]" not in source.replace("Without the [generation] extra", "")  # never reinstall torch
    assert "COLAB_SD_INSTALL_FROM" in source and "colab_sd.launch(" in source
    assert all(not c.get("outputs") for c in code)  # committed clean, no saved widget state or tokens


def test_notebook_executes_and_renders_the_app(tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("COLAB_SD_INSTALL_FROM", str(ROOT))
    monkeypatch.setenv("COLAB_SD_HOME", str(models))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the install must not need the network
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = nb.cells[1].outputs
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    views = [o for o in outputs if o.output_type == "display_data" and
             "application/vnd.jupyter.widget-view+json" in o.data]
    assert len(views) == 1
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    root_id = views[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert state[root_id]["model_name"] == "VBoxModel"
    text = json.dumps(state)
    for title in ("Download", "Library", "Generate", "Tokens"):
        assert f'"{title}"' in text
    assert str(models) in text  # the app tells where the models live
    # launch() laid out the models folder that COLAB_SD_HOME names.
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == sorted(
        ["checkpoint", "lora", "vae", "embedding", "controlnet", "upscaler", "text_encoder", "other"])


def test_the_same_cell_runs_on_a_simulated_kaggle(tmp_path, monkeypatch):
    """Kaggle's variables, folders under tmp, its secrets client (a fake with the real error classes): the one cell
    picks /kaggle/temp/models, the Kaggle secret, and does not try to mount Google Drive."""
    from test_hosts import FAKE_KAGGLE_SECRETS

    site, root = tmp_path / "site", tmp_path / "kaggle"
    site.mkdir()
    (site / "kaggle_secrets.py").write_text(FAKE_KAGGLE_SECRETS)
    (root / "working").mkdir(parents=True)
    state = tmp_path / "kaggle_state.json"
    state.write_text(json.dumps({"attached": {"CIVITAI_TOKEN": "kaggle-notebook-secret-123456"}}))
    for key, value in {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_URL_BASE": "https://www.kaggle.com",
                       "KAGGLE_USER_SECRETS_TOKEN": "jwt-for-tests", "COLAB_SD_KAGGLE_ROOT": str(root),
                       "FAKE_KAGGLE_STATE": str(state), "PYTHONPATH": str(site),
                       "COLAB_SD_INSTALL_FROM": str(ROOT), "PIP_NO_INDEX": "1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("COLAB_SD_HOME", "COLAB_SD_OUTPUTS", "CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("use_google_drive = False", "use_google_drive = True")
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = nb.cells[1].outputs
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Google Drive is Colab's: on Kaggle" in printed
    text = json.dumps(nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"], ensure_ascii=False)
    assert str(root / "temp" / "models") in text
    assert "from Kaggle secret CIVITAI_TOKEN" in text and "kaggle-notebook-secret" not in text
    assert (root / "temp" / "models" / "checkpoint").is_dir()
