"""Recreate against the fake CivitAI with tiny real models: an image page (its `meta` with and without
civitaiResources), a JPEG whose A1111 parameters sit in EXIF, resources found by version id, hash and name,
each failure named in one line (deleted, early access, a family colab_sd cannot run, no metadata) while the rest
is still done; the CLI's `recreate` (with a real 2-step generation) and `search`."""
from __future__ import annotations

import json

import pytest

from colab_sd import cli
from colab_sd.civitai import levels
from colab_sd.library import read_sidecar
from colab_sd.recreation import recreate
from colab_sd.tokens import TokenStore
from fakes.civitai import FakeFile
from fakes.civitai_catalog import FakeImage, jpeg
from fakes.fixtures import sha256


@pytest.fixture(scope="module")
def tiny():
    import tiny_models

    return tiny_models.tiny_library()


def _autov2(data: bytes) -> str:
    return sha256(data)[:10].upper()


@pytest.fixture
def gallery(civitai, tiny):
    """Checkpoint, LoRA and embedding made of the tiny models, plus the ones that cannot be had; image 5001 uses
    all of them (CivitAI's own resource list), 5002 has no generation data, 5003 is mature."""
    ckpt = (tiny / "checkpoint" / "tiny-sd1.safetensors").read_bytes()
    lora = (tiny / "lora" / "tiny-kohya.safetensors").read_bytes()
    emb = (tiny / "embedding" / "tiny-emb.safetensors").read_bytes()
    civitai.add_version(model_id=11, version_id=1101, model_name="Tiny Checkpoint", model_type="Checkpoint",
                        files=[FakeFile(11001, "tiny_ckpt.safetensors", ckpt)])
    meta = {"prompt": "a tiny house, tinystyle, <lora:tiny_style:0.6>", "negativePrompt": "tinyneg, blurry",
            "steps": 2, "cfgScale": 5, "seed": 7, "Size": "64x64", "sampler": "Euler a",
            "civitaiResources": [{"type": "checkpoint", "modelVersionId": 1101},
                                 {"type": "lora", "weight": 0.6, "modelVersionId": 1201},
                                 {"type": "lora", "weight": 0.5, "modelVersionId": 1401},
                                 {"type": "lora", "weight": 1, "modelVersionId": 1501},
                                 {"type": "lora", "weight": 1, "modelVersionId": 999999}],
            "resources": [{"name": "tinyneg", "type": "embed", "hash": _autov2(emb)}]}
    civitai.add_version(model_id=12, version_id=1201, model_name="Tiny Style", model_type="LORA",
                        trained_words=["tinystyle"], files=[FakeFile(12001, "tiny_style.safetensors", lora)],
                        images=[FakeImage(5001, meta=meta, width=64, height=64), FakeImage(5002),
                                FakeImage(5003, level=levels.X, meta={**meta, "seed": 8})])
    civitai.add_version(model_id=13, version_id=1301, model_name="Tiny Neg", model_type="TextualInversion",
                        files=[FakeFile(13001, "tiny_neg.safetensors", emb)])
    civitai.add_version(model_id=14, version_id=1401, model_name="Fresh Style", model_type="LORA",
                        early_access_until="2099-03-04T05:06:00.000Z",
                        files=[FakeFile(14001, "fresh.safetensors", lora[:-1] + b"\x01")])
    civitai.add_version(model_id=15, version_id=1501, model_name="Video Motion", model_type="LORA",
                        base_model="Hunyuan Video", files=[FakeFile(15001, "motion.safetensors", lora[:-1] + b"\x02")])
    return {"ckpt": ckpt, "lora": lora, "emb": emb, "meta": meta}


def _by_label(result):
    return {r.label: r for r in result.resources}


def test_recreate_an_image_page_downloads_what_it_used(gallery, civitai, models):
    result = recreate("https://civitai.com/images/5001", models, tokens=TokenStore(use_colab=False))
    by = _by_label(result)
    assert by["Tiny Checkpoint v1"].status == "downloaded"
    assert by["Tiny Style v1"].status == "downloaded" and by["Tiny Style v1"].weight == 0.6
    assert by["Tiny Neg v1"].status == "downloaded"  # by its AutoV2 hash
    assert by["Fresh Style v1"].status == "missing" and "Early Access until 2099-03-04 05:06 UTC" in by[
        "Fresh Style v1"].why
    assert by["Video Motion v1"].status == "missing" and "Hunyuan Video" in by["Video Motion v1"].why
    assert "cannot run" in by["Video Motion v1"].why
    assert by["version 999999"].status == "missing" and "no version 999999" in by["version 999999"].why
    assert len(result.resources) == 6  # the <lora:tiny_style> tag and version 1201 are one LoRA
    req = result.request
    assert req["model"] == "tiny_ckpt.safetensors" and req["loras"] == [("tiny_style", 0.6)]
    assert req["prompt"] == "a tiny house, tinystyle"
    assert req["negative_prompt"] == "tiny_neg, blurry"  # the embedding's word is its file's name here
    assert (req["steps"], req["seed"], req["width"], req["height"], req["sampler"]) == (2, 7, 64, 64, "Euler a")
    assert (models / "lora" / "tiny_style.safetensors").read_bytes() == gallery["lora"]
    assert read_sidecar(models / "lora" / "tiny_style.safetensors")["trigger_words"] == ["tinystyle"]
    assert (models / "lora" / "tiny_style.safetensors.preview.jpeg").is_file()
    lines = result.lines()
    assert sum(line.startswith("✗") for line in lines) == 3 and all("\n" not in line for line in lines)
    # The page look-up asked for everything the page shows (nsfw=X) with flat meta.
    sent = civitai.hits("/api/v1/images")[0]["query"]
    assert sent == {"imageId": "5001", "withMeta": "true", "flatMeta": "true", "nsfw": "X"}
    # Again: everything is found in the library, nothing is downloaded twice.
    served = len(civitai.hits("/api/download/"))
    again = recreate("https://civitai.red/images/5001", models, tokens=TokenStore(use_colab=False))
    assert [r.status for r in again.resources].count("found") == 3 and len(civitai.hits("/api/download/")) == served


def test_missing_metadata_and_mature_images(gallery, models):
    bare = recreate("civitai.com/images/5002", models, download=False)
    assert bare.resources == [] and bare.request["model"] is None
    assert any("no generation data" in n for n in bare.notes)
    mature = recreate("https://civitai.red/images/5003", models, download=False)
    assert mature.request["seed"] == 8 and {r.status for r in mature.resources} == {"missing"}
    assert any("not downloaded" in (r.why or "") for r in mature.resources)


def test_meta_without_civitai_resources_is_resolved_by_hash(gallery, civitai, models):
    """An A1111 upload: no civitaiResources, only `Model hash` and `hashes` (AutoV2, one with 0x) in its meta."""
    meta = {"prompt": "a tiny barn <lora:old_name:0.9>", "steps": 2, "seed": 11, "Size": "64x64",
            "sampler": "DPM++ 2M Karras", "Model": "something_else", "Model hash": _autov2(gallery["ckpt"]).lower(),
            "hashes": {"model": _autov2(gallery["ckpt"]), "lora:old_name": "0x" + _autov2(gallery["lora"])}}
    civitai.add_image(FakeImage(5010, meta=meta), 1201)
    result = recreate("https://civitai.com/images/5010", models)
    assert {(r.role, r.status) for r in result.resources} == {("checkpoint", "downloaded"), ("lora", "downloaded")}
    assert result.request["loras"] == [("tiny_style", 0.9)]  # the tag's name was old_name; the file is tiny_style
    assert (result.request["sampler"], result.request["schedule"]) == ("DPM++ 2M", "Karras")
    assert len(civitai.hits("/api/v1/model-versions/by-hash/")) == 2


def test_jpeg_with_parameters_in_exif(gallery, civitai, models, tmp_path):
    text = ("a tiny house <lora:tiny_style:0.8>\nNegative prompt: blurry\nSteps: 2, Sampler: DPM++ 2M, "
            "Schedule type: Karras, CFG scale: 6, Seed: 99, Size: 64x64, "
            f"Model hash: {_autov2(gallery['ckpt']).lower()}, Model: my_ckpt, "
            f'Hashes: {{"model": "{_autov2(gallery["ckpt"])}", "lora:tiny_style": "{_autov2(gallery["lora"])}"}}, '
            "Version: v1.10.1")
    photo = tmp_path / "found_online.jpeg"
    photo.write_bytes(jpeg(64, 64, 3, parameters=text))
    result = recreate(str(photo), models)
    statuses = {(r.role, r.status) for r in result.resources}
    assert statuses == {("checkpoint", "downloaded"), ("lora", "downloaded")}
    assert result.request["loras"] == [("tiny_style", 0.8)] and result.request["seed"] == 99
    assert (result.request["sampler"], result.request["schedule"]) == ("DPM++ 2M", "Karras")
    assert any(r["path"].startswith("/api/v1/model-versions/by-hash/") for r in civitai.requests)
    plain = tmp_path / "plain.jpeg"
    plain.write_bytes(jpeg(64, 64, 4))
    empty = recreate(str(plain), models)
    assert empty.resources == [] and "carries no generation settings" in empty.notes[0]


def test_bad_sources_are_one_line(models, tmp_path):
    from colab_sd.errors import InputError

    with pytest.raises(InputError, match="not a CivitAI image page, an image URL or an image file"):
        recreate(str(tmp_path / "nope.png"), models)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a PNG, JPEG or WebP"):
        recreate(str(tmp_path / "notes.txt"), models)


def test_unknown_image_page(civitai, models):
    from colab_sd.errors import NotFoundError

    with pytest.raises(NotFoundError, match="CivitAI has no image 424242"):
        recreate("https://civitai.com/images/424242", models)


def test_cli_recreate_generates_and_prints_json(gallery, civitai, models, tmp_path, monkeypatch, capsys, tiny):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tiny / "_configs"))
    out_dir = tmp_path / "outputs"
    code = cli.main(["recreate", "https://civitai.com/images/5001", "--dir", str(models), "--out", str(out_dir),
                     "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["request"]["model"] == "tiny_ckpt.safetensors" and data["request"]["loras"] == [["tiny_style", 0.6]]
    statuses = sorted(r["status"] for r in data["resources"])
    assert statuses == ["downloaded", "downloaded", "downloaded", "missing", "missing", "missing"]
    assert all(r["why"] for r in data["resources"] if r["status"] == "missing")
    assert len(data["images"]) == 1
    from PIL import Image

    with Image.open(data["images"][0]) as img:
        assert img.size == (64, 64) and "Seed: 7" in img.info["parameters"]
    # Without generating, the human report: one line per resource.
    assert cli.main(["recreate", "https://civitai.com/images/5001", "--dir", str(models), "--no-generate"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n✓ ") + out.startswith("✓") >= 3 and "✗ lora Fresh Style v1" in out


def test_cli_search(gallery, civitai, capsys):
    assert cli.main(["search", "tiny", "--type", "lora", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in data["items"]] == ["Tiny Style"] and data["items"][0]["url"].endswith(
        "/models/12?modelVersionId=1201")
    assert cli.main(["search", "", "--sort", "newest", "--limit", "2"]) == 0
    captured = capsys.readouterr()
    assert "Video Motion" in captured.out and "--cursor 2" in captured.err
    assert cli.main(["search", "x", "--nsfw", "spicy"]) == 2  # a usage error, as README says
    assert "unknown content level" in capsys.readouterr().err
