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


# ---------------------------------------------------------------------------------------------- damaged sidecars (A16)

DAMAGED = {
    "list": b"[1, 2, 3]",
    "number": b"42",
    "string": b'"a string"',
    "null": b"null",
    "truncated": b'{"source": "https://example.com/x", "sha2',
    "empty": b"",
    "not-utf8": b"\xff\xfe\x00{",
    "wrong-fields": b'{"trigger_words": 5, "size": "big", "civitai": [1], "sha256": 7, "also_sources": "x", '
                    b'"base_model": {"a": 1}, "source": ["u"]}',
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_sidecar_counts_as_absent(tmp_path, content):
    root = library.ensure_layout(tmp_path)
    model = root / "lora" / "style.safetensors"
    model.write_bytes(b"x" * 10)
    library.sidecar_path(model).write_bytes(content)
    meta = library.read_sidecar(model)
    assert isinstance(meta, dict)
    for key, kind in (("trigger_words", list), ("size", int), ("civitai", dict), ("sha256", str), ("source", str),
                      ("also_sources", list), ("base_model", str)):
        assert key not in meta or isinstance(meta[key], kind)
    [entry] = library.list_models(root)
    assert entry.trigger_words == [] and entry.base_model is None and entry.to_dict()["sha256"] is None
    assert library.find_by_source(root, "https://example.com/x") is None
    library.update_sidecar(model, {"sha256": "ab" * 32})  # a damaged sidecar is replaced, not a crash
    assert library.read_sidecar(model)["sha256"] == "ab" * 32


def test_damaged_sidecars_and_part_states_never_break_an_unrelated_download(server, models):
    """Wrong-shaped JSON beside other files (sidecars and `.part.json`) in every kind folder: a new download of
    an unknown-kind link still lands, and the library still lists."""
    from servers import Route

    import colab_sd

    for i, (label, content) in enumerate(DAMAGED.items()):
        folder = models / library.KINDS[i % len(library.KINDS)]
        folder.mkdir(exist_ok=True)
        (folder / f"{label}.safetensors").write_bytes(b"m" * 8)
        library.sidecar_path(folder / f"{label}.safetensors").write_bytes(content)
        (folder / f"{label}-half.bin.part").write_bytes(b"p" * 8)
        (folder / f"{label}-half.bin.part.json").write_bytes(content)
    body = bytes(range(256)) * 40
    server.route("/fresh.bin", Route(body=body))
    path = colab_sd.download(server.url("/fresh.bin"), models_dir=models)
    assert path.read_bytes() == body and path.parent.name == "other"
    assert library.read_sidecar(path)["sha256"]  # its own sidecar is whole
    assert len(library.list_models(models)) == len(DAMAGED) + 1


@pytest.mark.parametrize("content", [DAMAGED["list"], DAMAGED["number"], DAMAGED["truncated"]],
                         ids=["list", "number", "truncated"])
def test_a_damaged_part_state_of_the_same_file_restarts_it_cleanly(server, models, content):
    from servers import Route

    import colab_sd

    body = bytes(range(256)) * 64
    server.route("/same.bin", Route(body=body))
    (models / "other").mkdir()
    (models / "other" / "same.bin.part").write_bytes(b"\0" * 5000)  # preallocated, content unknown
    (models / "other" / "same.bin.part.json").write_bytes(content)
    path = colab_sd.download(server.url("/same.bin"), models_dir=models)
    assert path.read_bytes() == body
