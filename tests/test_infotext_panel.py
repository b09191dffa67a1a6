"""The Generate panel's "Use these settings": an uploaded image (JPEG with A1111 EXIF, as CivitAI serves originals)
and a gallery image fill the real widgets; the model and LoRAs are found in the tiny library by hash."""
from __future__ import annotations

import io
import os
from datetime import datetime, timezone

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("diffusers")

os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image  # noqa: E402

from colab_sd.generation import metadata  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402
from colab_sd.ui.compat import IPYWIDGETS_MAJOR  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.usefixtures("offline_panel")]


def jpeg_with_infotext(text: str) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (40, 40, 40)).save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def upload(widget, name: str, data: bytes) -> None:
    """Set a FileUpload's value the way the browser does (ipywidgets 8: a tuple of dicts; 7: a dict by name)."""
    if IPYWIDGETS_MAJOR >= 8:
        widget.value = ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.now(timezone.utc)},)
    else:
        widget.value = {name: {"metadata": {"name": name, "size": len(data)}, "content": data}}


def test_upload_fills_the_panel_and_names_what_is_missing(library):
    panel = App(models_dir=library).generate
    model_hash = metadata.autov2(library / "checkpoint" / "tiny-sd1.safetensors")
    lora_hash = metadata.lora_hash(library / "lora" / "tiny-kohya.safetensors")
    text = ("a lantern <lora:kohya-renamed:0.7> <lora:absent:1>\nNegative prompt: blurry\n"
            f"Steps: 12, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 31337, Size: 64x96, Model hash: {model_hash}, "
            f'Model: some-other-name, Clip skip: 2, Lora hashes: "kohya-renamed: {lora_hash}, absent: 0badc0ffee00"')
    panel.model.value = "tiny-sdxl.safetensors"
    upload(panel.reuse.upload, "civitai.jpeg", jpeg_with_infotext(text))
    assert not panel.reuse.use.disabled and "seed 31337" in panel.reuse.summary.value
    panel.reuse.use.click()
    assert panel.model.value == "tiny-sd1.safetensors"  # by its hash: the name in the image is another one
    assert panel.prompt.value == "a lantern <lora:tiny-kohya:0.7> " and panel.negative.value == "blurry"
    assert (panel.sampler.value, panel.schedule.value) == ("DPM++ 2M", "Karras")
    assert (panel.steps.value, panel.cfg.value, panel.seed.value) == (12, 6.5, 31337)
    assert (panel.size.value, panel.width.value, panel.height.value) == ("Custom", 64, 96)
    status = panel.reuse.status.value
    assert "not in the library: lora absent [0badc0ffee00]" in status and "checkpoint tiny-sd1.safetensors" in status
    if hasattr(panel, "clip_skip"):
        assert panel.clip_skip.value == 2
    else:
        assert "clip skip 2 cannot be set" in status


def test_a_bad_upload_is_one_line_and_disables_the_button(library):
    panel = App(models_dir=library).generate
    upload(panel.reuse.upload, "notes.png", b"not an image at all")
    assert panel.reuse.use.disabled and "not an image" in panel.reuse.status.value
    plain = io.BytesIO()
    Image.new("RGB", (8, 8)).save(plain, format="PNG")
    upload(panel.reuse.upload, "plain.png", plain.getvalue())
    assert panel.reuse.use.disabled and "no generation settings" in panel.reuse.status.value


def test_gallery_image_gives_its_settings_back(library):
    import colab_sd

    panel = App(models_dir=library).generate
    result = colab_sd.generate(model="tiny-sd1", prompt="a tiny house", negative_prompt="fog", steps=2, width=64,
                               height=64, seed=777, sampler="Euler a", cfg=5.0, models_dir=str(library), save=False)
    panel._show_result(result)  # what a Generate click ends with
    item = panel.gallery_items[0]
    buttons = [w for w in item.widget.children[1].children if getattr(w, "description", "") == "Use these settings"]
    assert len(buttons) == 1
    panel.prompt.value, panel.seed.value, panel.sampler.value = "something else", -1, "DPM++ 2M"
    buttons[0].click()
    assert (panel.prompt.value, panel.negative.value, panel.seed.value) == ("a tiny house", "fog", 777)
    assert (panel.sampler.value, panel.schedule.value, panel.cfg.value) == ("Euler a", "Automatic", 5.0)
    assert panel.model.value == "tiny-sd1.safetensors" and panel.size.value == "Custom"
    assert panel.request_fields()["seed"] == 777


def test_upload_value_shapes_of_ipywidgets_7_and_8():
    from colab_sd.ui.reuse_box import upload_contents

    data = b"\x89PNG..."
    assert upload_contents(({"name": "a.png", "content": memoryview(data)},)) == data  # 8
    assert upload_contents({"a.png": {"metadata": {"name": "a.png"}, "content": data}}) == data  # 7
    assert upload_contents(()) is None and upload_contents({}) is None


def test_hires_settings_fill_the_hires_row_and_a_plain_image_turns_it_off(library):
    panel = App(models_dir=library).generate
    hires = panel.second.hires
    text = ("a castle\nSteps: 8, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Model: tiny-sd1, "
            "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 4, Hires upscaler: R-ESRGAN 4x+, "
            "Hires prompt: \"a castle, detailed\"")
    upload(panel.reuse.upload, "hires.jpeg", jpeg_with_infotext(text))
    panel.reuse.use.click()
    assert hires.enabled.value and (hires.scale.value, hires.steps.value, hires.denoise.value) == (1.5, 4, 0.45)
    assert hires.prompt.value == "a castle, detailed" and hires.upscaler.value == "Latent"
    assert "hires upscaler R-ESRGAN 4x+ is not available here: Latent is used" in panel.reuse.status.value
    assert panel.request_fields()["hires_scale"] == 1.5
    plain = jpeg_with_infotext("a hut\nSteps: 8, Sampler: Euler, Seed: 6, CFG scale: 7")
    upload(panel.reuse.upload, "plain.jpeg", plain)
    panel.reuse.use.click()
    assert not hires.enabled.value and "hires_scale" not in panel.request_fields()
