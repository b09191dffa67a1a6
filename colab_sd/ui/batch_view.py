"""Batch view in the Generate panel: the panel's settings × a list of prompts × N seeds, over every GPU.

One row per worker (its device, the job and step it is on), one bar over all jobs, the finished images as small
thumbnails, newest first. Like a single generation, the batch runs in a thread while the button callback applies
its events here on the main thread (see pump.py); Colab's stop button cancels every worker and keeps the images
already saved.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..errors import ColabSDError
from ..events import Info
from ..tokens import redact
from .html import message
from .pump import pump

log = logging.getLogger("colab_sd.ui")

THUMBS = 12
THUMB_SIDE = 96


class BatchView:
    """Widgets and the run; `panel` is the GeneratePanel whose settings each job starts from."""

    def __init__(self, panel, generate_batch: Optional[Callable[..., Any]] = None):
        self.panel = panel
        self._generate_batch = generate_batch
        self.result = None
        self.prompts = widgets.Textarea(placeholder="one prompt per line (empty: the prompt above)",
                                        description="Prompts", style={"description_width": "90px"},
                                        layout=widgets.Layout(width="100%", height="80px"))
        self.seeds = widgets.BoundedIntText(value=4, min=1, max=1000, description="Seeds each",
                                            style={"description_width": "90px"}, layout=widgets.Layout(width="200px"))
        self.workers = widgets.Dropdown(options=["all", "1", "2", "4", "8"], value="all", description="Workers",
                                        style={"description_width": "70px"}, layout=widgets.Layout(width="180px"))  # "all": one worker process per GPU
        self.button = widgets.Button(description="Run batch", icon="th", button_style="primary",
                                     layout=widgets.Layout(flex="0 0 auto", min_width="120px"))
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="320px"))
        self.status = widgets.HTML()
        self.rows = widgets.VBox()
        self.thumbs = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self._worker_rows: dict[int, widgets.HTML] = {}
        self._total = 0
        self._finished = 0
        self.button.on_click(self.start)
        body = widgets.VBox([
            widgets.HTML(message("The settings above × these prompts × N seeds (from the seed above, or random). "
                                 "Each image is the one a single Generate with its seed gives.")),
            self.prompts, widgets.HBox([self.seeds, self.workers, self.button]),
            widgets.HBox([self.bar, self.status]), self.rows, self.thumbs,
        ])
        self.widget = widgets.Accordion(children=[body])
        self.widget.set_title(0, "Batch: prompts × seeds over every GPU")
        self.widget.selected_index = None

    def prompt_list(self) -> list[str]:
        lines = [line.strip() for line in (self.prompts.value or "").splitlines() if line.strip()]
        return lines or [self.panel.prompt.value]

    def start(self, _=None) -> None:
        """Run the batch with the panel's current settings; rows, bar and thumbnails update live."""
        if not self.panel.model.value:
            self.status.value = message("No checkpoint yet: download one in the Download tab.", "warn")
            return
        fields = {k: v for k, v in self.panel.request_fields().items() if k != "preview_every"}
        prompts, seeds = self.prompt_list(), int(self.seeds.value)
        workers = self.workers.value if self.workers.value == "all" else int(self.workers.value)
        self._total, self._finished = len(prompts) * seeds, 0
        self._worker_rows.clear()
        self.rows.children, self.thumbs.children = [], []
        self.bar.value, self.bar.bar_style = 0.0, ""
        self.status.value = message(f"starting {self._total} job(s)… (each worker loads the model once)", "info")
        self.button.disabled = True
        outcome: dict = {}

        def work(emit, cancel):
            run = self._generate_batch
            if run is None:
                from ..generation.batch import generate_batch as run
            try:
                outcome["result"] = run(None, prompts=prompts, seeds=seeds, workers=workers, on_event=emit,
                                        cancel=cancel, **fields)
            except ColabSDError as err:
                outcome["error"] = redact(err)

        try:
            pump(work, self.apply, on_interrupt=lambda: setattr(
                self.status, "value", message("stopping every worker after its current step…", "warn")))
        except Exception as err:  # one line here; details in the log
            log.debug("batch failed", exc_info=True)
            outcome["error"] = redact(f"{type(err).__name__}: {err}")
        finally:
            self.button.disabled = False
        self._finish(outcome)

    def _finish(self, outcome: dict) -> None:
        if "error" in outcome:
            self.bar.bar_style = "danger"
            self.status.value = message(f"✗ {outcome['error']}", "error")
            return
        self.result = result = outcome.get("result")
        if result is None:
            return
        tone = "warn" if result.cancelled or result.failed else "ok"
        self.bar.bar_style = "warning" if tone == "warn" else "success"
        folder = result.paths[0].parent if result.paths else None
        where = f" · in {folder}" if folder else ""
        self.status.value = message(result.summary() + where, tone)

    def apply(self, event) -> None:
        """One batch event onto the widgets (main thread)."""
        from ..generation.batch_jobs import JobDone, JobFailed, JobStep, WorkerState

        if isinstance(event, WorkerState):
            text = {"ready": "ready", "died": "died (its job goes to another worker)", "stopped": "stopped"}
            self._row(event.worker).value = message(f"worker {event.worker} · {event.device} · "
                                                    f"{text.get(event.state, event.state)}",
                                                    "error" if event.state == "died" else "muted")
        elif isinstance(event, JobStep):
            self._row(event.worker).value = message(f"worker {event.worker} · {event.device} · job {event.index + 1}"
                                                    f"/{self._total} · step {event.step}/{event.total}", "info")
        elif isinstance(event, JobDone):
            self._advance()
            self._thumbs(event.paths)
        elif isinstance(event, JobFailed):
            if not event.retry:
                self._advance()
            self.status.value = message(f"job {event.index + 1}: {redact(event.message)}", "warn")
        elif isinstance(event, Info):
            self.status.value = message(event.message, "info")

    def _row(self, worker: int) -> widgets.HTML:
        row = self._worker_rows.get(worker)
        if row is None:
            row = self._worker_rows[worker] = widgets.HTML()
            self.rows.children = [self._worker_rows[k] for k in sorted(self._worker_rows)]
        return row

    def _advance(self) -> None:
        self._finished += 1
        self.bar.value = self._finished / max(self._total, 1)
        self.status.value = message(f"{self._finished}/{self._total} job(s) finished", "info")

    def _thumbs(self, paths) -> None:
        from PIL import Image

        from .generate_panel import png_bytes

        new = []
        for path in paths:
            try:
                with Image.open(path) as img:
                    img.load()
                    data = png_bytes(img, THUMB_SIDE)
            except OSError:  # a file moved away meanwhile: the batch result still lists it
                continue
            new.append(widgets.Image(value=data, format="png", layout=widgets.Layout(margin="2px")))
        self.thumbs.children = (new + list(self.thumbs.children))[:THUMBS]
