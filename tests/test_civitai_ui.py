"""The CivitAI tab driven like a user, headless: search, thumbnails from the CDN (small, no token), more results by
cursor, a model's page (versions, files, trigger words, previews at the content level, early access said before
a download), Download through the Download machinery, Recreate from a preview filling the Generate panel, and a
real tiny generation from there. The fake CivitAI serves tiny real models."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("ipywidgets")

from ui_helpers import all_states  # noqa: E402

from colab_sd.civitai import levels  # noqa: E402
from colab_sd.tokens import TokenStore  # noqa: E402
from colab_sd.ui import thumbs  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402
from fakes.civitai import TOKEN, FakeFile  # noqa: E402
from fakes.civitai_catalog import FakeImage  # noqa: E402
from fakes.fixtures import sha256  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    import tiny_models

    return tiny_models.tiny_library()


@pytest.fixture
def site(civitai, tiny, model_bytes):
    ckpt = (tiny / "checkpoint" / "tiny-sd1.safetensors").read_bytes()
    lora = (tiny / "lora" / "tiny-kohya.safetensors").read_bytes()
    civitai.add_version(model_id=11, version_id=1101, model_name="Tiny Checkpoint", model_type="Checkpoint",
                        downloads=50, files=[FakeFile(11001, "tiny_ckpt.safetensors", ckpt)])
    meta = {"prompt": "a tiny house, tinystyle", "negativePrompt": "blurry", "steps": 2, "cfgScale": 5, "seed": 7,
            "Size": "64x64", "sampler": "Euler a",
            "civitaiResources": [{"type": "checkpoint", "modelVersionId": 1101},
                                 {"type": "lora", "weight": 0.6, "modelVersionId": 1201}]}
    civitai.add_version(model_id=12, version_id=1201, model_name="Tiny Style", model_type="LORA", downloads=900,
                        trained_words=["tinystyle"], thumbs_up=99,
                        images=[FakeImage(5001, meta=meta, width=64, height=64), FakeImage(5003, level=levels.X),
                                FakeImage(5004, level=levels.PG13)],
                        files=[FakeFile(12001, "tiny_style.safetensors", lora, primary=True),
                               FakeFile(12002, "tiny_style_fp32.safetensors", model_bytes["lora"], fp="fp32",
                                        size="full")])
    civitai.add_version(model_id=14, version_id=1401, model_name="Tiny Fresh", model_type="LORA",
                        early_access_until="2099-03-04T05:06:00.000Z", files=[FakeFile(14001, "fresh.safetensors", lora)])
    for n in range(21):  # enough for a second page
        civitai.add_version(model_id=100 + n, version_id=10000 + n, model_name=f"Tiny Filler {n}", model_type="LORA",
                            downloads=n, files=[FakeFile(20000 + n, f"filler_{n}.safetensors", model_bytes["noise"])])
    return civitai


def _loaded(image) -> bool:
    return image.value != thumbs.PLACEHOLDER and image.format in ("jpeg", "webp")


def test_search_open_download_recreate_generate(site, tiny, models, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tiny / "_configs"))
    app = App(models_dir=models, outputs_dir=tmp_path / "out", tokens=TokenStore(civitai=TOKEN, use_colab=False))
    panel = app.civitai

    # Search: the grid of cards, each thumbnail fetched at the CDN's 320 px size, without credentials.
    panel.query.value = "tiny"
    panel.type.value = "lora"
    panel.sort.value = "Most Downloaded"
    panel.search_button.click()
    assert len(panel.cards) == 20 and panel.cards[0].card.name == "Tiny Style"
    assert "900" in panel.cards[0].text.value and "LORA" in panel.cards[0].text.value
    assert all(_loaded(c.image) for c in panel.cards)
    assert panel.more_button.layout.display == "" and "more below" in panel.status.value
    cdn = site.cdn.requests
    assert len(cdn) == 20 and all("/width=320,optimized=true/" in r["path"] for r in cdn)
    assert site.cdn.auth_seen == 0 and all("Authorization" not in r["headers"] for r in cdn)
    sent = site.hits("/api/v1/models")[-1]
    assert sent["headers"].get("Authorization") == f"Bearer {TOKEN}" and TOKEN not in sent["full_path"]
    panel.more_button.click()  # the next page by cursor, added below
    assert len(panel.cards) == 23 and panel.more_button.layout.display == "none"
    assert "cursor=20" in site.hits("/api/v1/models")[-1]["full_path"]

    # Open: versions, files with size/format/precision, trigger words, previews at PG (PG-13 and X hidden).
    panel.cards[0].button.click()
    view = panel.model_view
    assert view.widget.layout.display == "" and "Tiny Style" in view.title.value
    labels = [label for label, _ in view.file.options]
    assert labels[0].startswith("tiny_style.safetensors · ") and "SafeTensor fp16 pruned · primary" in labels[0]
    assert "SafeTensor fp32 full" in labels[1] and "tinystyle" in view.words.value
    assert len(view.preview_images) == 1 and "2 previews above the content level" in str(
        [c.value for c in view.previews.children if hasattr(c, "value")])
    assert all(_loaded(img) for img in view.preview_images)
    assert any("/width=450,optimized=true/" in r["path"] for r in site.cdn.requests)
    assert view.notes.value == "" and not view.button.disabled  # a token is set, the version is public

    # Download the primary file: the Download machinery's row and bar, the Library refreshed, a preview saved.
    view.button.click()
    row = panel.downloader.rows[0]
    assert row.state == "done" and row.bar.value == 1.0
    path = models / "lora" / "tiny_style.safetensors"
    assert row.path == path and sha256(path.read_bytes()) == sha256((tiny / "lora" / "tiny-kohya.safetensors")
                                                                    .read_bytes())
    assert site.hits("/api/download/models/1201")[-1]["query"] == {"fileId": "12001"}
    assert (models / "lora" / "tiny_style.safetensors.preview.jpeg").is_file()
    assert "tiny_style.safetensors" in app.library.table.value

    # Recreate the first preview: the checkpoint is downloaded, the LoRA found, the Generate panel filled.
    view.recreate_buttons[0].click()
    box = panel.recreate_box
    assert "2 of 2 resources ready" in box.status.value, box.report.value
    assert [r.status for r in box.result.resources] == ["downloaded", "found"]
    assert any(r.state == "done" for r in box.rows.values())
    gen = app.generate
    if gen is None:
        pytest.skip("the generation stack is not installed")
    assert app.tabs.selected_index == 2
    assert gen.model.value == "tiny_ckpt.safetensors" and gen.prompt.value == "a tiny house, tinystyle"
    assert [(r.entry.name, r.weight.value) for r in gen.lora_rows] == [("tiny_style.safetensors", 0.6)]
    assert (gen.seed.value, gen.steps.value, gen.width.value, gen.height.value) == (7, 2, 64, 64)
    assert gen.sampler.value == "Euler a" and gen.negative.value == "blurry"
    gen.button.click()
    assert "✓ 1 image · seed 7" in gen.status.value, gen.status.value
    # No token anywhere in the widgets' state (what a saved notebook holds).
    assert TOKEN not in str(all_states(app.widget))


def test_early_access_and_no_token_are_said_before_download(site, models):
    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    panel = app.civitai
    panel.query.value = "tiny fresh"
    panel.search_button.click()
    assert [c.card.name for c in panel.cards] == ["Tiny Fresh"]
    panel.cards[0].button.click()
    notes = panel.model_view.notes.value
    assert "Early Access until 2099-03-04 05:06 UTC" in notes and "No CivitAI token set" in notes
    assert panel.model_view.button.disabled
    assert not site.hits("/api/download/")


def test_content_level_shows_previews_per_image(site, models):
    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    panel = app.civitai
    panel.query.value = "tiny style"
    panel.level.value = "X"
    panel.search_button.click()
    assert "nsfw=true" in site.hits("/api/v1/models")[-1]["full_path"]
    panel.cards[0].button.click()
    assert len(panel.model_view.preview_images) == 3  # PG, X and PG-13 all allowed at X


def test_thumbnails_load_on_the_main_thread(site, models):
    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    panel = app.civitai
    seen = []

    def watch(change):
        for card in panel.cards:
            card.image.observe(lambda c: seen.append(threading.current_thread() is threading.main_thread()),
                               names="value")

    panel.grid.observe(watch, names="children")
    panel.query.value = "tiny"
    panel.search_button.click()
    assert seen and all(seen)


def test_bad_filters_say_so(site, models):
    app = App(models_dir=models, tokens=TokenStore(use_colab=False))
    app.civitai.query.value = "x"
    app.civitai.period.value = "Day"
    app.civitai.search_button.click()
    assert "nothing found" in app.civitai.status.value
    before = len(site.requests)
    app.civitai.recreate_box.button.click()
    assert "Paste an image page" in app.civitai.recreate_box.status.value and len(site.requests) == before
