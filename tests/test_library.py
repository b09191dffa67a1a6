"""The library layout: models root, kinds and their aliases, listing with sidecars and diffusers folders."""
from pathlib import Path

import pytest

from colab_sd import library
from colab_sd.errors import InputError

CANARY = "fake-canary-token-5f2b9c1e7d"


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
