"""Generate panel with real tiny diffusers models on CPU: choices, presets, LoRA rows, a click that shows an image."""
from __future__ import annotations

import io
import json
import threading

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("diffusers")

from ui_helpers import interrupt_main_when  # noqa: E402

from colab_sd.library import write_sidecar  # noqa: E402
from colab_sd.ui import settings  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402


pytestmark = pytest.mark.usefixtures("offline_panel")


def test_choices_presets_loras_and_embeddings(library):
    write_sidecar(library / "lora" / "tiny-kohya.safetensors", {"trigger_words": ["film grain", "red"]})
    app = App(models_dir=library)
    panel = app.generate
    assert {"tiny-sd1.safetensors", "tiny-sdxl.safetensors", "tiny-sd1-diffusers"} <= set(panel.model.options)
    assert list(panel.vae.options)[0] == "(the model's own)" and "tiny-vae.safetensors" in panel.vae.options
    assert "tiny-emb" in panel.embeddings_hint.value

    panel.model.value = "tiny-sdxl.safetensors"
    assert panel.size.options[0] == "1024×1024" and (panel.width.value, panel.height.value) == (1024, 1024)
    panel.model.value = "tiny-sd1.safetensors"
    assert panel.size.options[:2] == ("512×512", "512×768") and panel.width.disabled
    panel.size.value = "Custom"
    assert not panel.width.disabled

    panel.sampler.value = "Euler a"  # a sampler without Karras / Exponential variants
    assert list(panel.schedule.options) == ["Automatic"]

    assert panel.lora_choice.value is None and panel.request_fields()["loras"] == []  # nothing shown as picked
    panel.lora_choice.value = "tiny-kohya.safetensors"  # choosing a LoRA adds its row: what is shown is used
    assert panel.lora_choice.value is None and len(panel.lora_rows) == 1
    panel.lora_choice.value = "tiny-kohya.safetensors"  # the same LoRA is not added twice
    assert len(panel.lora_rows) == 1
    assert panel.request_fields()["clip_skip"] == 1
    panel.clip_skip.value = 2
    assert panel.request_fields()["clip_skip"] == 2
    row = panel.lora_rows[0]
    row.weight.value = 0.6
    assert [b.description for b in row.word_buttons] == ["film grain", "red"]
    panel.prompt.value = "a photo of a cat"
    row.word_buttons[0].click()
    row.word_buttons[0].click()  # once is enough
    assert panel.prompt.value == "a photo of a cat, film grain"
    assert panel.request_fields()["loras"] == [("tiny-kohya", 0.6)]
    row.remove_button.click()
    assert panel.lora_rows == [] and panel.loras_box.children == ()


def test_generate_click_shows_progress_image_parameters_and_remembers_settings(library, tmp_path):
    outputs = tmp_path / "outputs"
    app = App(models_dir=library, outputs_dir=outputs)
    panel = app.generate
    panel.model.value = "tiny-sd1.safetensors"
    panel.prompt.value = "a photo of a red house"
    panel.negative.value = "blurry"
    panel.sampler.value = "Euler"
    panel.steps.value = 6
    panel.size.value = "Custom"
    panel.width.value, panel.height.value = 64, 96
    panel.seed.value = 1234
    seen = []
    panel.bar.observe(lambda c: seen.append((c["new"], threading.current_thread() is threading.main_thread())),
                      names="value")
    panel.button.click()

    assert "✓ 1 image · seed 1234" in panel.status.value, panel.status.value
    assert panel.bar.value == 1.0 and panel.bar.bar_style == "success"
    assert any(0 < v < 1 for v, _ in seen) and all(on_main for _, on_main in seen)
    assert len(panel.gallery.children) == 1
    item = panel.gallery_items[0]
    from PIL import Image

    assert Image.open(io.BytesIO(item.image.value)).size == (64, 96)
    assert item.path.is_file() and item.path.parent.parent == outputs  # outputs/<date>/
    assert "Seed: 1234" in item.parameters and "Steps: 6" in item.parameters and "Sampler: Euler" in item.parameters
    assert str(item.path) in item.text.value and "a photo of a red house" in item.text.value

    # Newest first; "Reuse last" brings back the seed a random run used.
    panel.seed.value = -1
    panel.button.click()
    assert len(panel.gallery.children) == 2 and panel.gallery_items[1] is item
    random_seed = panel.last_seed
    assert random_seed not in (None, -1, 1234) and f"Seed: {random_seed}" in panel.gallery_items[0].parameters
    panel.reuse_seed.click()
    assert panel.seed.value == random_seed
    panel.random_seed.click()
    assert panel.seed.value == -1

    # The settings survive into a new app (a new Colab session with the models on Drive).
    saved = json.loads(settings.settings_path(library).read_text())
    assert saved["prompt"] == "a photo of a red house" and saved["steps"] == 6
    again = App(models_dir=library).generate
    assert (again.model.value, again.prompt.value, again.negative.value) == ("tiny-sd1.safetensors",
                                                                             "a photo of a red house", "blurry")
    assert (again.sampler.value, again.steps.value, again.size.value, again.width.value, again.height.value) == (
        "Euler", 6, "Custom", 64, 96)


def test_errors_are_one_line_and_leave_the_panel_usable(library, tmp_path):
    panel = App(models_dir=library, outputs_dir=tmp_path).generate
    panel.model.value = "tiny-sd1.safetensors"
    panel.size.value = "Custom"
    panel.width.value = 100  # not a multiple of 8
    panel.button.click()
    assert "✗ width 100 is not a multiple of 8: use 96 or 104" in panel.status.value
    assert panel.bar.bar_style == "danger" and not panel.button.disabled and panel.gallery.children == ()

    empty = App(models_dir=tmp_path / "empty").generate
    empty.button.click()
    assert "No checkpoint yet" in empty.status.value


def test_stop_button_stops_generation_after_a_step(library, tmp_path):
    panel = App(models_dir=library, outputs_dir=tmp_path / "out").generate
    panel.model.value = "tiny-sd1.safetensors"
    panel.steps.value = 150
    panel.size.value = "Custom"
    panel.width.value = panel.height.value = 64
    interrupt_main_when(lambda: 0 < panel.bar.value < 0.5)
    panel.button.click()
    assert "stopped" in panel.status.value and panel.bar.bar_style == "warning"
    assert panel.gallery.children == ()
    assert not list((tmp_path / "out").rglob("*.png"))  # unfinished images are not saved
    assert not panel.button.disabled
