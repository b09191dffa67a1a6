"""The Recreate box: an image page, image URL or file path in; its resources downloaded with live bars; the
Generate panel filled. The work runs in a worker thread while the click pumps its events (pump.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import ipywidgets as widgets

from ..errors import ColabSDError
from ..events import Completed, Error, Info, Progress
from ..tokens import TokenStore, redact
from .download_panel import DownloadRow
from .html import message
from .pump import pump

log = logging.getLogger("colab_sd.ui")


class RecreateBox:
    """`on_result(result)` gets the RecreateResult on the main thread (the app fills the Generate panel)."""

    def __init__(self, models_dir, tokens: TokenStore, on_result: Optional[Callable] = None,
                 on_downloaded: Optional[Callable] = None):
        self.models_dir, self.tokens = Path(models_dir), tokens
        self.on_result, self.on_downloaded = on_result, on_downloaded
        self.result = None
        self.rows: dict[str, DownloadRow] = {}
        self.source = widgets.Text(placeholder="https://civitai.com/images/123…, an image URL, or /content/image.png",
                                   description="Image", style={"description_width": "50px"},
                                   layout=widgets.Layout(width="560px"))
        self.button = widgets.Button(description="Recreate", icon="magic", button_style="info")
        self.status = widgets.HTML()
        self.rows_box = widgets.VBox()
        self.report = widgets.HTML()
        self.button.on_click(self.start)
        intro = widgets.HTML("<b>Recreate an image</b> " + message(
            "— its checkpoint, LoRAs, embeddings and VAE are downloaded and the Generate tab is filled in."))
        self.widget = widgets.VBox([intro, widgets.HBox([self.source, self.button]), self.status, self.rows_box,
                                    self.report])

    def start(self, _=None, source: Optional[str] = None) -> None:
        if source is not None:
            self.source.value = source
        text = self.source.value.strip()
        if not text:
            self.status.value = message("Paste an image page (civitai.com/images/…), an image URL or a file path.",
                                        "warn")
            return
        self.rows, self.rows_box.children, self.report.value = {}, [], ""
        self.status.value = message(f"reading {redact(text)}…", "info")
        self.button.disabled = True
        outcome: dict = {}

        def work(emit, cancel):
            from ..recreation import recreate

            try:
                outcome["result"] = recreate(text, self.models_dir, tokens=self.tokens, on_event=emit, cancel=cancel)
            except ColabSDError as err:
                outcome["error"] = redact(err)

        try:
            pump(work, self._apply, on_interrupt=lambda: setattr(self.status, "value", message("stopping…", "warn")))
        except Exception as err:  # a bug: one line here, details in the log
            log.debug("recreate failed", exc_info=True)
            outcome["error"] = redact(f"{type(err).__name__}: {err}")
        finally:
            self.button.disabled = False
        if "error" in outcome:
            self.status.value = message(f"✗ {outcome['error']}", "error")
            return
        result = outcome.get("result")
        if result is None:
            self.status.value = message("stopped", "warn")
            return
        self.result = result
        self._report(result)
        if any(r.status == "downloaded" for r in result.resources) and self.on_downloaded is not None:
            self.on_downloaded([r.path for r in result.resources if r.status == "downloaded"])
        if self.on_result is not None:
            self.on_result(result)

    def _apply(self, event) -> None:
        """Main thread: download events → one row per download (keyed by the event's job)."""
        job = getattr(event, "job", None)
        if job is None or job == "recreate" or not isinstance(event, (Progress, Info, Completed, Error)):
            if isinstance(event, Info):
                self.status.value = message(event.message, "info")
            return
        row = self.rows.get(job)
        if row is None:
            row = self.rows[job] = DownloadRow(job)
            self.rows_box.children = [r.widget for r in self.rows.values()]
        row.apply(event)

    def _report(self, result) -> None:
        missing = len(result.missing)
        tone = "ok" if not missing and result.request.get("model") else "warn"
        self.status.value = message(f"{len(result.resources) - missing} of {len(result.resources)} resources ready"
                                    + (f", {missing} missing" if missing else ""), tone)
        lines = "".join(f"<div>{message(line, 'error' if line.startswith('✗') else 'muted')}</div>"
                        for line in result.lines())
        self.report.value = lines


def fill_generate(panel, result, entries) -> list[str]:
    """Put a recreate result into the Generate panel (model, VAE, LoRAs with weights, prompts, sampler, steps,
    CFG, size, seed); returns what could not be set. `entries` is the refreshed library listing."""
    panel.set_library(entries)
    req, left = result.request, []
    if req.get("model") in panel.model.options:
        panel.model.value = req["model"]
    elif req.get("model"):
        left.append(f"model {req['model']}")
    if req.get("vae") in panel.vae.options:
        panel.vae.value = req["vae"]
    for row in list(panel.lora_rows):
        panel.remove_lora(row)
    by_stem = {e.stem: e.name for e in entries if e.kind == "lora"}
    for name, weight in req.get("loras") or []:
        if by_stem.get(name) is None or panel.add_lora(name=by_stem[name], weight=float(weight)) is None:
            left.append(f"LoRA {name}")
    panel.prompt.value = req.get("prompt") or ""
    panel.negative.value = req.get("negative_prompt") or ""
    for key, widget in (("sampler", panel.sampler), ("schedule", panel.schedule)):
        if req.get(key) in widget.options:
            widget.value = req[key]
    for key, widget in (("steps", panel.steps), ("cfg", panel.cfg), ("seed", panel.seed)):
        if req.get(key) is not None:
            try:
                widget.value = req[key]
            except Exception:  # outside the slider's range: keep the panel's value, say so
                left.append(f"{key} {req[key]}")
    if req.get("width") and req.get("height"):
        preset = f"{req['width']}×{req['height']}"
        panel.size.value = preset if preset in panel.size.options else "Custom"
        panel.width.value, panel.height.value = int(req["width"]), int(req["height"])
    return left
