"""Generate panel: hires fix (a collapsible row), img2img / inpaint (init image, mask upload or painting), and the
gallery's "Send to img2img" / "Upscale" actions. The panel stays the owner of the request; `fields()` adds ours.

Painting a mask uses ipycanvas (a third-party widget): it renders in JupyterLab / Notebook with the ipycanvas
frontend installed (it ships in the wheel), and in Colab once Colab's custom widget manager is on (which Colab
requires for any third-party widget, ipywidgets 7.7.1 included; `enable_custom_widget_manager` is called when
painting is asked for). Where ipycanvas cannot be imported the painter is replaced by a note; uploading a mask
(white = repaint) works everywhere.
"""
from __future__ import annotations

import io
import logging
from typing import Optional

import ipywidgets as widgets

from .html import message
from .reuse_box import upload_contents

log = logging.getLogger("colab_sd.ui")

ACCEPT = ".png,.jpg,.jpeg,.webp"
SAME = "Use same"
CONTENT = [("original", "original"), ("fill", "fill"), ("latent noise", "latent-noise"),
           ("latent nothing", "latent-nothing")]
AREAS = [("Whole picture", "whole"), ("Only masked", "masked")]
CANVAS_SIDE = 384  # the painting canvas' longer side on screen, px


def _label() -> dict:
    return {"description_width": "120px"}


def _collapsible(title: str, child: widgets.Widget) -> widgets.Accordion:
    box = widgets.Accordion(children=[child])
    box.set_title(0, title)
    box.selected_index = None  # closed until asked for
    return box


class HiresRow:
    """A1111's hires fix controls; `enabled` is the checkbox."""

    def __init__(self, upscalers: list[str], samplers: list[str]):
        label = _label()
        self.enabled = widgets.Checkbox(value=False, description="Hires fix", indent=False)
        self.upscaler = widgets.Dropdown(options=upscalers, value="Latent", description="Upscaler", style=label)
        self.scale = widgets.FloatSlider(value=2.0, min=1.0, max=4.0, step=0.05, description="Upscale by", style=label)
        self.resize_w = widgets.BoundedIntText(value=0, min=0, max=4096, step=8, description="Resize width to",
                                               style=label, layout=widgets.Layout(width="220px"))
        self.resize_h = widgets.BoundedIntText(value=0, min=0, max=4096, step=8, description="Resize height to",
                                               style=label, layout=widgets.Layout(width="220px"))
        self.steps = widgets.IntSlider(value=0, min=0, max=150, description="Hires steps", style=label)
        self.denoise = widgets.FloatSlider(value=0.7, min=0.0, max=1.0, step=0.01, description="Denoising",
                                           style=label)
        self.sampler = widgets.Dropdown(options=[SAME] + samplers, value=SAME, description="Hires sampler", style=label)
        self.prompt = widgets.Textarea(placeholder="(the same prompt)", description="Hires prompt", style=label,
                                       layout=widgets.Layout(width="100%", height="48px"))
        self.negative = widgets.Textarea(placeholder="(the same negative)", description="Hires negative", style=label,
                                         layout=widgets.Layout(width="100%", height="40px"))
        body = widgets.VBox([self.enabled, widgets.HBox([self.upscaler, self.scale]),
                             widgets.HBox([self.resize_w, self.resize_h]), widgets.HBox([self.steps, self.denoise]),
                             self.sampler, self.prompt, self.negative,
                             widgets.HTML(message("Hires steps 0 = the same as Steps; resize 0×0 = by the factor."))])
        self.widget = _collapsible("Hires fix", body)

    def fields(self) -> dict:
        if not self.enabled.value:
            return {}
        return {"hires_scale": float(self.scale.value), "hires_upscaler": self.upscaler.value,
                "hires_resize_width": int(self.resize_w.value), "hires_resize_height": int(self.resize_h.value),
                "hires_steps": int(self.steps.value), "hires_denoise": float(self.denoise.value),
                "hires_sampler": None if self.sampler.value == SAME else self.sampler.value,
                "hires_prompt": self.prompt.value, "hires_negative_prompt": self.negative.value}


class MaskPainter:
    """A brush over the init image (ipycanvas); the mask is kept here as a numpy array, white = repaint."""

    def __init__(self):
        self.canvas = None
        self.shown = None
        self.mask = None
        self.scale = 1.0
        self.down = False
        self.last = (0.0, 0.0)
        self.brush = widgets.IntSlider(value=24, min=2, max=128, description="Brush", style=_label())
        self.clear = widgets.Button(description="Clear mask", icon="eraser")
        self.clear.on_click(lambda _: self.reset())
        self.note = widgets.HTML()
        self.image = None
        self.widget = widgets.VBox([self.note])

    def available(self) -> bool:
        try:
            import ipycanvas  # noqa: F401
        except ImportError:
            return False
        return True

    def show(self, image) -> None:
        """Put the image on a canvas to paint over; a note instead where ipycanvas is missing."""
        import numpy as np

        self.image = image
        self.mask = np.zeros((image.height, image.width), dtype=np.float32)
        if not self.available():
            self.note.value = message("Painting needs ipycanvas (pip install ipycanvas); upload a mask instead "
                                      "(white = repaint).", "warn")
            self.widget.children = [self.note]
            return
        from ipycanvas import Canvas

        _third_party_widgets()
        self.scale = CANVAS_SIDE / max(image.size)
        w, h = int(image.width * self.scale), int(image.height * self.scale)
        self.shown = _image_widget(image.resize((w, h)))
        self.canvas = Canvas(width=w, height=h, layout=widgets.Layout(width=f"{w}px", height=f"{h}px"))
        self.canvas.draw_image(self.shown, 0, 0)
        self.canvas.fill_style = "rgba(255, 255, 255, 0.6)"
        self.canvas.on_mouse_down(self._down)
        self.canvas.on_mouse_move(self._move)
        self.canvas.on_mouse_up(lambda x, y: setattr(self, "down", False))
        self.note.value = message("Paint the part to repaint; it becomes the mask.", "muted")
        self.widget.children = [self.canvas, widgets.HBox([self.brush, self.clear]), self.note]

    def _down(self, x, y) -> None:
        self.down = True
        self.last = (x, y)
        self.dab(x, y)

    def _move(self, x, y) -> None:
        if not self.down:
            return
        # mouse moves arrive tens of px apart: dabs every quarter brush along the way make one stroke
        (x0, y0), spacing = self.last, max(1.0, self.brush.value / 4)
        count = max(1, int(((x - x0) ** 2 + (y - y0) ** 2) ** 0.5 / spacing))
        from ipycanvas import hold_canvas

        with hold_canvas(self.canvas):  # one message to the browser for the whole run of dabs
            for i in range(1, count + 1):
                self.dab(x0 + (x - x0) * i / count, y0 + (y - y0) * i / count, report=i == count)
        self.last = (x, y)

    def dab(self, x: float, y: float, report: bool = True) -> None:
        """One brush dab at canvas (x, y): drawn on the canvas and written into the mask at image scale."""
        import numpy as np

        radius = self.brush.value / 2
        if self.canvas is not None:
            self.canvas.fill_circle(x, y, radius)
        if self.mask is None:
            return
        cx, cy, r = x / self.scale, y / self.scale, radius / self.scale
        ys, xs = np.ogrid[: self.mask.shape[0], : self.mask.shape[1]]
        self.mask[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = 1.0
        if not report:
            return
        share = float(self.mask.mean()) * 100
        self.note.value = message(f"mask: {share:.1f} % of the image painted", "muted")

    def reset(self) -> None:
        if self.mask is not None:
            self.mask[:] = 0
        if self.canvas is not None:
            self.canvas.clear()
            self.canvas.draw_image(self.shown, 0, 0)
        self.note.value = message("mask cleared", "muted")

    def value(self):
        return self.mask if self.mask is not None and self.mask.any() else None


def _third_party_widgets() -> None:
    """Colab draws third-party widgets (ipycanvas) only with its custom widget manager, on ipywidgets 7 too."""
    from ..tokens import in_colab

    if not in_colab():
        return
    try:
        from google.colab import output  # type: ignore

        output.enable_custom_widget_manager()
    except Exception:  # painting is optional; the upload still works
        log.warning("could not enable Colab's custom widget manager; the mask painter may stay blank",
                    exc_info=True)


def _image_widget(image) -> widgets.Image:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return widgets.Image(value=buf.getvalue(), format="png")


class Img2ImgBox:
    """Init image (upload or from the gallery), denoising, resize mode; an optional mask (upload or painted)."""

    def __init__(self):
        from ..generation.masks import RESIZE_MODES

        label = _label()
        self.init = None  # PIL image
        self.mask_upload_image = None
        self.upload = widgets.FileUpload(accept=ACCEPT, multiple=False, description="Init image…")
        self.clear = widgets.Button(description="Clear", icon="times", tooltip="back to txt2img")
        self.preview = widgets.Image(format="png", layout=widgets.Layout(max_width="192px", height="auto",
                                                                         display="none"))
        self.strength = widgets.FloatSlider(value=0.75, min=0.0, max=1.0, step=0.01, description="Denoising",
                                            style=label)
        self.resize_mode = widgets.Dropdown(options=list(RESIZE_MODES), value=RESIZE_MODES[0],
                                            description="Resize mode", style=label)
        self.inpaint = widgets.Checkbox(value=False, description="Inpaint (mask)", indent=False)
        self.mask_upload = widgets.FileUpload(accept=ACCEPT, multiple=False, description="Mask…",
                                              tooltip="white = repaint, black = keep")
        self.paint = widgets.Button(description="Paint mask", icon="paint-brush")
        self.painter = MaskPainter()
        self.blur = widgets.IntSlider(value=4, min=0, max=64, description="Mask blur", style=label)
        self.area = widgets.ToggleButtons(options=AREAS, value="whole", description="Inpaint area", style=label)
        self.padding = widgets.IntSlider(value=32, min=0, max=256, description="Padding", style=label)
        self.content = widgets.Dropdown(options=CONTENT, value="original", description="Masked content", style=label)
        self.status = widgets.HTML()
        self.upload.observe(self._uploaded, names="value")
        self.mask_upload.observe(self._mask_uploaded, names="value")
        self.clear.on_click(lambda _: self.set_init(None))
        self.paint.on_click(lambda _: self.start_painting())
        self.mask_box = mask_box = widgets.VBox([widgets.HBox([self.mask_upload, self.paint]), self.painter.widget,
                                                 self.blur, self.area, self.padding, self.content])
        body = widgets.VBox([widgets.HBox([self.upload, self.clear]), self.preview, self.strength, self.resize_mode,
                             self.inpaint, mask_box, self.status])
        self.widget = _collapsible("img2img / inpaint", body)

    def _uploaded(self, change) -> None:
        data = upload_contents(change.get("new"))
        if data is not None:
            self.set_init(self._open(data, "init image"))

    def _mask_uploaded(self, change) -> None:
        data = upload_contents(change.get("new"))
        if data is not None:
            self.mask_upload_image = self._open(data, "mask")
            if self.mask_upload_image is not None:
                self.inpaint.value = True
                self.status.value = message("mask uploaded", "ok")

    def _open(self, data: bytes, label: str):
        from ..errors import ColabSDError
        from ..generation.upscale_files import open_image

        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return img.copy() if label == "mask" else open_image(img, label)
        except (OSError, ValueError, ColabSDError) as err:
            self.status.value = message(f"✗ the {label} is not an image PIL can read ({type(err).__name__})", "error")
            return None

    def set_init(self, image) -> None:
        """Use `image` (PIL) as the init image (None: back to txt2img); opens the box."""
        self.init = image
        self.mask_upload_image = None
        if image is None:
            self.preview.value = b""
            self.preview.layout.display = "none"  # an empty image widget shows the browser's broken-image icon
            self.status.value = message("txt2img (no init image)", "muted")
            return
        self.preview.layout.display = None
        buf = io.BytesIO()
        thumb = image.copy()
        thumb.thumbnail((192, 192))
        thumb.save(buf, format="PNG")
        self.preview.value = buf.getvalue()
        self.widget.selected_index = 0
        self.status.value = message(f"init image {image.width}×{image.height}", "ok")

    def start_painting(self) -> None:
        if self.init is None:
            self.status.value = message("choose an init image first", "warn")
            return
        self.inpaint.value = True
        self.painter.show(self.init)

    def fields(self) -> dict:
        if self.init is None:
            return {}
        out = {"init_image": self.init, "strength": float(self.strength.value), "resize_mode": self.resize_mode.value}
        if self.inpaint.value:
            mask = self.painter.value()
            out.update(mask=mask if mask is not None else self.mask_upload_image, mask_blur=int(self.blur.value),
                       inpaint_area=self.area.value, inpaint_padding=int(self.padding.value),
                       masked_content=self.content.value)
            if out["mask"] is None:
                out.pop("mask")
        return out


class SecondPassControls:
    """The hires row, the img2img / inpaint box and the gallery actions, for one GeneratePanel."""

    def __init__(self, panel):
        from ..generation.samplers import SAMPLERS
        from ..generation.upscalers import upscaler_names

        self.panel = panel
        self.hires = HiresRow(upscaler_names(panel.models_dir), SAMPLERS)
        self.img2img = Img2ImgBox()
        self.widget = widgets.VBox([self.hires.widget, self.img2img.widget])

    def refresh(self) -> None:
        """New files in upscaler/ show up in the hires choices (called when the library is rescanned)."""
        from ..generation.upscalers import upscaler_names

        names = upscaler_names(self.panel.models_dir)
        keep = self.hires.upscaler.value
        self.hires.upscaler.options = names
        self.hires.upscaler.value = keep if keep in names else "Latent"

    def fields(self) -> dict:
        """Request fields for the panel's generate call (hires only without an init image, as in A1111); none
        while the chosen model's family hides the rows (ui/family_controls.py: no image-to-image pipeline)."""
        if self.img2img.widget.layout.display == "none":
            return {}
        img = self.img2img.fields()
        return img if img else self.hires.fields()

    def gallery_actions(self, item) -> None:
        """"Send to img2img" and "Upscale" under a gallery image."""
        send = widgets.Button(description="Send to img2img", icon="share", layout=widgets.Layout(width="auto"))
        upscale = widgets.Button(description="Upscale", icon="expand", layout=widgets.Layout(width="auto"),
                                 tooltip="with the hires row's upscaler (Latent modes: Lanczos), ×2")
        send.on_click(lambda _: self.send_to_img2img(item))
        upscale.on_click(lambda _: self.upscale(item))
        item.actions = widgets.HBox([send, upscale])
        box = item.widget.children[1]  # the text column beside the thumbnail
        box.layout.flex_flow, box.layout.align_items = "column", "flex-start"  # buttons under the text, not squeezed
        box.children = tuple(box.children) + (item.actions,)

    def send_to_img2img(self, item) -> None:
        self.img2img.set_init(item.source_image)
        if self.img2img.widget.layout.display == "none":  # the chosen model's family has no img2img
            fam = getattr(self.panel, "_family", None)
            name = fam.name if fam is not None else "this model"
            self.panel.status.value = message(f"sent to img2img, but {name} has no img2img in colab_sd: choose a "
                                              f"Flux, Chroma, SD3, Z-Image or SD model to use it", "warn")
            return
        self.panel.status.value = message("sent to img2img: set the denoising and press Generate", "info")

    def upscale(self, item) -> Optional[object]:
        """Upscale a gallery image ×2 with the chosen upscaler; the result joins the gallery and is saved."""
        from ..errors import ColabSDError
        from ..generation.upscale_files import upscale
        from ..generation.upscalers import is_latent

        name = self.hires.upscaler.value
        name = "Lanczos" if is_latent(name) else name
        self.panel.status.value = message(f"upscaling with {name}…", "info")
        try:
            result = upscale([item.source_image], name, scale=2.0, models_dir=self.panel.models_dir,
                             outputs_dir=self.panel.outputs_dir)
        except ColabSDError as err:
            self.panel.status.value = message(f"✗ {err}", "error")
            return None
        self.panel.add_to_gallery(result.images[0], item.parameters, result.paths[0] if result.paths else None)
        self.panel.status.value = message(f"✓ upscaled to {result.images[0].width}×{result.images[0].height} with "
                                          f"{name}", "ok")
        return result
