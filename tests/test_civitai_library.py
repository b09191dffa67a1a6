"""Library intelligence against the fake CivitAI: the preview saved beside a downloaded model and shown in the
Library, `colab-sd models --updates` and the Library's badge for a newer version (early access ones are not
offered), and the Library's Identify button for a file copied in by hand."""
from __future__ import annotations

import json

import pytest

import colab_sd
from colab_sd import cli
from colab_sd.library import read_sidecar
from colab_sd.tokens import TokenStore
from fakes.civitai import TOKEN, FakeFile
from fakes.civitai_catalog import FakeImage


@pytest.fixture
def versions(civitai, model_bytes):
    """Model 5000: v1 (5001), then v2 (5002, public), then v3 (5003, early access); the API lists newest first."""
    civitai.add_version(model_id=5000, version_id=5001, model_name="Dreamy", model_type="LORA", version_name="v1",
                        images=[FakeImage(50011, level=8), FakeImage(50012, level=1)],
                        files=[FakeFile(5101, "dreamy_v1.safetensors", model_bytes["lora"])])
    civitai.add_version(model_id=5000, version_id=5002, model_name="Dreamy", model_type="LORA", version_name="v2",
                        files=[FakeFile(5102, "dreamy_v2.safetensors", model_bytes["lora_xl"])])
    civitai.add_version(model_id=5000, version_id=5003, model_name="Dreamy", model_type="LORA", version_name="v3",
                        early_access_until="2099-01-01T00:00:00.000Z",
                        files=[FakeFile(5103, "dreamy_v3.safetensors", model_bytes["embedding"])])
    return civitai


def test_preview_is_the_first_safe_image(versions, models):
    path = colab_sd.download("civitai:5001", models_dir=models, tokens=TokenStore(civitai=TOKEN, use_colab=False))
    preview = path.with_name(path.name + ".preview.jpeg")
    # The version's first image is X: the PG one is kept, at the CDN's 450 px width, fetched without the token.
    from PIL import Image

    with Image.open(preview) as img:
        assert img.size[0] == 450
    shown = [r for r in versions.cdn.requests if "/width=450" in r["path"]]
    assert len(shown) == 1 and versions.images[50012].uuid in shown[0]["path"]
    assert versions.cdn.auth_seen == 0


def test_models_updates_cli(versions, models, capsys):
    colab_sd.download("civitai:5001", models_dir=models, tokens=TokenStore(use_colab=False))
    assert cli.main(["models", "--dir", str(models), "--updates", "--json"]) == 0
    out, err = capsys.readouterr()
    entry = json.loads(out)[0]
    assert entry["update"]["id"] == 5002 and entry["update"]["name"] == "v2"  # v3 is early access: not offered
    assert entry["update"]["url"].endswith("/models/5000?modelVersionId=5002")
    assert "update: lora/dreamy_v1.safetensors 'v1' → 'v2'" in err
    assert read_sidecar(models / "lora" / "dreamy_v1.safetensors")["civitai"]["update"]["id"] == 5002
    colab_sd.download("civitai:5002", models_dir=models, tokens=TokenStore(use_colab=False))
    assert cli.main(["models", "--dir", str(models), "--type", "lora", "--updates"]) == 0
    err = capsys.readouterr().err
    assert "up to date: lora/dreamy_v2.safetensors" in err
    # One request per model, however many of its versions are in the library.
    assert len(versions.hits("/api/v1/models/5000")) == 1


def test_library_panel_previews_badge_and_identify(versions, models, model_bytes):
    pytest.importorskip("ipywidgets")
    from colab_sd.ui.app import App

    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    colab_sd.download("civitai:5001", models_dir=models, tokens=TokenStore(use_colab=False))
    (models / "lora" / "copied_by_hand.safetensors").write_bytes(model_bytes["lora_xl"])  # = Dreamy v2's file
    app.library.refresh()
    lib = app.library
    assert lib.civitai.gallery.value.count("<img src='data:image/jpeg;base64,") == 1
    assert "Dreamy v1" in lib.table.value
    lib.civitai.identify_button.click()
    assert "identified 1 of 1: copied_by_hand.safetensors = Dreamy" in lib.civitai.status.value
    assert read_sidecar(models / "lora" / "copied_by_hand.safetensors")["civitai"]["version_id"] == 5002
    assert lib.civitai.gallery.value.count("<img ") == 2  # its preview was saved too
    lib.civitai.updates_button.click()
    assert "newer versions: dreamy_v1.safetensors → v2" in lib.civitai.status.value
    assert "Dreamy v1 · ⬆ v2 available" in lib.table.value and "⬆ v2 available" in lib.civitai.gallery.value
