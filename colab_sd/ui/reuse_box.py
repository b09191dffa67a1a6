"""Generate panel: "Use these settings" from an uploaded image or a gallery image.

The image's settings are read by `colab_sd.infotext` (A1111, CivitAI, ComfyUI, colab_sd), its model, VAE and LoRAs
found in the library by `generation.reuse` (hash first, then name), and the panel's widgets filled; what the library
lacks, and what the panel cannot show, is named in one line under the button.
"""
from __future__ import annotations

import logging
from typing import Optional

import ipywidgets as widgets

from ..errors import ColabSDError
from .html import message

log = logging.getLogger("colab_sd.ui")

ACCEPT = ".png,.jpg,.jpeg,.webp,.avif,.gif"


def upload_contents(value) -> Optional[bytes]:
    """The bytes of the first file in a FileUpload value (ipywidgets 8: a tuple of dicts; 7: a dict by name)."""
    if not value:
        return None
    item = value[0] if isinstance(value, (tuple, list)) else next(iter(value.values()))
    content = item.get("content") if isinstance(item, dict) else None
    return bytes(content) if content is not None else None


class ReuseBox:
    """An upload, a summary of what the image says, and "Use these settings" that fills `panel`."""

    def __init__(self, panel):
        self.panel = panel
        self.params: Optional[dict] = None
        self.upload = widgets.FileUpload(accept=ACCEPT, multiple=False, description="Image…",
                                         tooltip="an image made by A1111, Forge, CivitAI, ComfyUI or colab_sd")
        self.use = widgets.Button(description="Use these settings", icon="clipboard", disabled=True,
                                  layout=widgets.Layout(width="auto"))
        self.summary = widgets.HTML()
        self.status = widgets.HTML()
        self.upload.observe(self._uploaded, names="value")
        self.use.on_click(self.apply)
        self.widget = widgets.VBox([widgets.HBox([self.upload, self.use]), self.summary, self.status])

    # -- reading -----------------------------------------------------------------------------------------

    def _uploaded(self, change) -> None:
        data = upload_contents(change.get("new"))
        if data is not None:
            self.load(data)

    def load(self, source, label: str = "the image") -> Optional[dict]:
        """Read the settings of a path, bytes or PIL image (or `from_text` output); show them; None on error."""
        from ..infotext import read_parameters

        try:
            params = source if isinstance(source, dict) else read_parameters(source)
        except ColabSDError as err:
            self.params, self.use.disabled = None, True
            self.summary.value = ""
            self.status.value = message(f"✗ {err}", "error")
            return None
        self.params, self.use.disabled = params, False
        self.summary.value = message(_summary(params, label), "info")
        self.status.value = ""
        return params

    def attach(self, item) -> widgets.Button:
        """Add a "Use these settings" button under a gallery item's text (its parameters text is read)."""
        from ..infotext import from_text

        button = widgets.Button(description="Use these settings", icon="clipboard", layout=widgets.Layout(width="auto"))

        def use(_):
            if self.load(from_text(item.parameters) if item.parameters else {}, "this image") is not None:
                self.apply()

        button.on_click(use)
        box = item.widget.children[1]
        box.children = tuple(box.children) + (button,)
        return button

    # -- filling the panel ---------------------------------------------------------------------------------

    def apply(self, _=None):
        """Fill the panel from the loaded settings; returns the `generation.reuse.Reuse` plan (None if nothing)."""
        from ..generation.reuse import request_from_parameters

        if not self.params:
            return None
        panel = self.panel
        plan = request_from_parameters(self.params, panel.models_dir)
        fields, notes = plan.fields, list(plan.notes)
        if "model" in fields and fields["model"] in panel.model.options:
            panel.model.value = fields["model"]  # first: it resets the size presets
        panel.prompt.value = fields.get("prompt", "")
        panel.negative.value = fields.get("negative_prompt", "")
        _set_sampler(panel, fields, notes)
        for key, widget in (("steps", panel.steps), ("cfg", panel.cfg), ("seed", panel.seed)):
            if key in fields:
                _set(widget, fields[key], key, notes)
        _set_size(panel, fields)
        clip_widget = getattr(panel, "clip_skip", None)  # the prompts work adds it to the panel
        if clip_widget is not None and "clip_skip" in fields:
            _set(clip_widget, fields["clip_skip"], "clip skip", notes)
        elif fields.get("clip_skip", 1) > 1:
            notes.append(f"clip skip {fields['clip_skip']} cannot be set in this panel")
        _set_hires(getattr(getattr(panel, "second", None), "hires", None), fields, notes)
        panel.vae.value = fields["vae"] if fields.get("vae") in panel.vae.options else panel.vae.options[0]
        for row in list(panel.lora_rows):
            panel.remove_lora(row)
        for name, weight in fields.get("loras", []):
            entry = next((e for e in panel.entries if e.kind == "lora" and _bare(e.name) == name), None)
            if entry is not None:
                panel.add_lora(name=entry.name, weight=float(weight))
        self.status.value = _outcome(plan, notes)
        return plan


def _set(widget, value, label: str, notes: list) -> None:
    low, high = getattr(widget, "min", None), getattr(widget, "max", None)
    if (low is not None and value < low) or (high is not None and value > high):
        notes.append(f"{label} {value} is outside this panel's range ({low}–{high}): kept at {widget.value}")
        return
    widget.value = value


def _set_hires(row, fields: dict, notes: list) -> None:
    """The panel's hires row (second_pass.HiresRow): on with the image's values when it used hires fix, else off."""
    if row is None:
        return
    row.enabled.value = any(key.startswith("hires_") for key in fields)
    if not row.enabled.value:
        return
    for key, widget, default in (("hires_scale", row.scale, 2.0), ("hires_resize_width", row.resize_w, 0),
                                 ("hires_resize_height", row.resize_h, 0), ("hires_steps", row.steps, 0),
                                 ("hires_denoise", row.denoise, 0.7), ("hires_prompt", row.prompt, ""),
                                 ("hires_negative_prompt", row.negative, "")):
        widget.value = default  # what the image leaves out means A1111's default, not the last image's value
        if fields.get(key) is not None:
            _set(widget, fields[key], key.replace("_", " "), notes)
    for key, widget, default in (("hires_upscaler", row.upscaler, "Latent"), ("hires_sampler", row.sampler, None)):
        value = fields.get(key)
        if value is not None and value not in widget.options:
            notes.append(f"{key.replace('_', ' ')} {value} is not available here: "
                         f"{default or widget.options[0]} is used")
        widget.value = value if value in widget.options else (default or widget.options[0])


def _set_sampler(panel, fields: dict, notes: list) -> None:
    from ..generation.samplers import resolve_sampler

    if "sampler" in fields:
        sampler, _ = resolve_sampler(fields["sampler"], None)
        panel.sampler.value = sampler.name  # its observer offers the schedules this sampler can follow
    if "schedule" in fields:
        wanted = fields["schedule"]
        label = next((s for s in panel.schedule.options if s.lower() == str(wanted).lower()), None)
        if label is None and resolve_sampler(panel.sampler.value, "Automatic")[1].lower() == str(wanted).lower():
            label = "Automatic"  # colab_sd writes the schedule Automatic stood for ("Normal")
        if label is None:
            notes.append(f"schedule {wanted} is not offered for {panel.sampler.value}: {panel.schedule.value} is used")
        else:
            panel.schedule.value = label


def _set_size(panel, fields: dict) -> None:
    from .generate_panel import CUSTOM

    width, height = fields.get("width"), fields.get("height")
    if not width or not height:
        return
    preset = f"{width}×{height}"
    if preset in panel.size.options:
        panel.size.value = preset
    else:
        panel.size.value = CUSTOM
        panel.width.value, panel.height.value = int(width), int(height)


def _outcome(plan, notes: list) -> str:
    found = [f"{r.kind} {r.found}" + (" (by hash)" if r.how == "hash" else "") for r in plan.resources if r.found]
    parts = ["✓ settings filled in"] + (["found: " + ", ".join(found)] if found else [])
    if plan.missing:
        parts.append("not in the library: " + plan.missing_text())
    parts.extend(notes)
    return message(" · ".join(parts), "warn" if plan.missing or notes else "ok")


def _summary(params: dict, label: str) -> str:
    bits = [f"{label}: {params['source']}"]
    for key, name in (("steps", "steps"), ("sampler", ""), ("cfg", "CFG"), ("seed", "seed")):
        if params.get(key) is not None:
            bits.append(f"{name} {params[key]}".strip())
    if params.get("width") and params.get("height"):
        bits.append(f"{params['width']}×{params['height']}")
    if params.get("model"):
        bits.append(f"model {params['model']}")
    prompt = params.get("prompt") or ""
    bits.append(f"“{prompt[:80]}{'…' if len(prompt) > 80 else ''}”")
    return " · ".join(bits)


def _bare(name: str) -> str:
    from ..library import MODEL_EXTENSIONS

    lower = name.lower()
    return next((name[: -len(ext)] for ext in MODEL_EXTENSIONS if lower.endswith(ext)), name)
