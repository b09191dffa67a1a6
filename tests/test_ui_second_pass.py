"""Generate panel's second-pass parts with the tiny models on the CPU: hires row → a 2× image, Send to img2img,
a painted mask → inpaint that keeps the unmasked pixels, Upscale on a gallery image."""
from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("diffusers")


from colab_sd.ui.app import App  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.usefixtures("offline_panel")]


def small_panel(library, outputs):
    panel = App(models_dir=library, outputs_dir=outputs).generate
    panel.model.value = "tiny-sd1.safetensors"
    panel.prompt.value = "a photo of a cat"
    panel.steps.value = 2
    panel.size.value = "Custom"
    panel.width.value, panel.height.value = 64, 64
    panel.seed.value = 9
    return panel


def test_hires_row_send_to_img2img_painted_mask_and_upscale(library, tmp_path):
    from PIL import Image

    panel = small_panel(library, tmp_path / "out")
    second = panel.second
    assert second.hires.widget.selected_index is None  # collapsed until opened
    assert list(second.hires.upscaler.options)[:2] == ["Latent", "Latent (antialiased)"]
    second.hires.enabled.value = True
    second.hires.scale.value = 2.0
    fields = panel.request_fields()
    assert fields["hires_scale"] == 2.0 and fields["hires_upscaler"] == "Latent" and fields["hires_sampler"] is None
    panel.button.click()
    assert "✓ 1 image" in panel.status.value, panel.status.value
    item = panel.gallery_items[0]
    assert item.source_image.size == (128, 128)
    assert "Hires upscale: 2" in item.parameters
    second.hires.enabled.value = False

    # Send to img2img, paint a mask, generate: only the painted part changes.
    panel.width.value, panel.height.value = 128, 128
    [send, upscale] = item.actions.children
    send.click()
    assert second.img2img.init is item.source_image and second.img2img.widget.selected_index == 0
    second.img2img.start_painting()
    painter = second.img2img.painter
    assert painter.canvas is not None  # ipycanvas is installed here
    painter.brush.value = 40
    painter.dab(painter.scale * 64, painter.scale * 64)  # a dab in the middle, in canvas coordinates
    second.img2img.blur.value = 2
    fields = panel.request_fields()
    assert fields["init_image"] is item.source_image and fields["mask"].any() and fields["mask_blur"] == 2
    assert "hires_scale" not in fields  # hires is txt2img only
    panel.button.click()
    assert "✓ 1 image" in panel.status.value, panel.status.value
    inpainted = panel.gallery_items[0].source_image
    from colab_sd.generation import masks

    keep = masks.blur_mask(painter.mask, 2) <= 0
    assert np.array_equal(np.asarray(inpainted)[keep], np.asarray(item.source_image)[keep])
    assert "Mask blur: 2" in panel.gallery_items[0].parameters

    # Upscale a gallery image (a latent mode in the hires row means Lanczos here)
    before = len(panel.gallery_items)
    upscale.click()
    assert len(panel.gallery_items) == before + 1, panel.status.value
    top = panel.gallery_items[0]
    assert top.source_image.size == (256, 256) and top.path.is_file() and top.path.parent.name == "upscaled"
    with Image.open(io.BytesIO(top.image.value)) as thumb:
        assert max(thumb.size) <= 512
    second.img2img.clear.click()
    assert second.img2img.fields() == {}
