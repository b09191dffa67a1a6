"""Download: URLs in (one per line), one row per URL with its own bar, bytes, speed, ETA, and result.

The downloads run one after another in a worker thread; the button callback pumps their events
into the rows on the main thread (see pump.py for why). Colab's stop button cancels: the running
row says so, its `.part` file stays for a later resume, and the rows not started are marked skipped.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Optional

import ipywidgets as widgets

from .. import api
from ..errors import ColabSDError, DownloadCancelled
from ..events import Cancelled, Completed, Error, Info, Progress
from ..library import KINDS, models_root
from ..tokens import TokenStore, redact, redact_url
from ..units import folder_size
from . import format as fmt
from .html import message
from .pump import pump

log = logging.getLogger("colab_sd.ui")


def parse_urls(text: str) -> list[str]:
    """Non-empty lines that are not comments, in order, without duplicates."""
    urls: list[str] = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in urls:
            urls.append(line)
    return urls


class DownloadRow:
    """One URL: a label, a bar (0..1) and a status line. `state` is waiting/running/done/error/cancelled."""

    def __init__(self, url: str):
        self.url = url
        self.job = redact_url(url)
        self.state = "waiting"
        self.path: Optional[Path] = None
        self.downloaded = 0  # bytes seen so far: what a cancel keeps
        self.size: Optional[int] = None
        self.skipped = False
        self.name = widgets.HTML(message(fmt.shorten(self.job, 70), "info"), layout=widgets.Layout(width="100%"))
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="320px"))
        self.status = widgets.HTML(message("waiting"))
        self.widget = widgets.VBox([self.name, widgets.HBox([self.bar, self.status])],
                                   layout=widgets.Layout(margin="0 0 6px 0"))

    def apply(self, event) -> None:
        if isinstance(event, Progress):
            self.state = "running"
            self.downloaded = event.downloaded
            if event.total:
                self.bar.value = event.fraction or 0.0
                text = (f"{fmt.size(event.downloaded)} / {fmt.size(event.total)} · {fmt.speed(event.speed)} · "
                        f"ETA {fmt.duration(event.eta)}")
            else:
                # Without a size the bar cannot move honestly: colour it and count bytes instead.
                self.bar.bar_style = "info"
                text = f"{fmt.size(event.downloaded)} · size unknown · {fmt.speed(event.speed)}"
            self.status.value = message(f"{int(round(100 * (event.fraction or 0)))} % · {text}" if event.total else text)
        elif isinstance(event, Info):
            if self.state == "waiting":
                self.state = "running"
            self.status.value = message(event.message, "info")
        elif isinstance(event, Completed):
            self.done(Path(event.path), event.bytes, event.skipped)
        elif isinstance(event, Error):
            self.failed(event.message)
        elif isinstance(event, Cancelled):
            self.cancelled()

    def start(self) -> None:
        self.state = "running"
        self.status.value = message("starting…", "info")

    def done(self, path: Path, size: int, skipped: bool = False) -> None:
        self.state, self.path, self.size, self.skipped = "done", Path(path), size, skipped
        self.bar.value, self.bar.bar_style = 1.0, "success"
        verb = "already there" if skipped else "saved"
        self.status.value = message(f"✓ 100 % · {verb}: {self.path.name} in {self.path.parent} ({fmt.size(size)})", "ok")

    def failed(self, text: str) -> None:
        self.state = "error"
        self.bar.bar_style = "danger"
        self.status.value = message(f"✗ {redact(text)}", "error")

    def cancelled(self) -> None:
        if self.state in ("done", "error", "cancelled"):
            return
        started = self.state == "running"
        self.state = "cancelled"
        self.bar.bar_style = "warning"
        kept = f" ({fmt.size(self.downloaded)})" if self.downloaded else ""
        text = (f"cancelled: the partial file is kept{kept}; click Download again to resume" if started
                else "cancelled before it started")
        self.status.value = message(text, "warn")


class DownloadPanel:
    """URL box, kind selector, Download button and the rows of the last batch."""

    def __init__(self, models_dir=None, tokens: Optional[TokenStore] = None,
                 on_downloaded: Optional[Callable[[list[Path]], None]] = None,
                 download: Callable[..., Path] = api.download):
        self.models_dir = models_root(models_dir)
        self.tokens = tokens if tokens is not None else TokenStore()
        self.on_downloaded = on_downloaded
        self._download = download
        self.rows: list[DownloadRow] = []
        self.urls = widgets.Textarea(placeholder="https://civitai.com/models/4384?modelVersionId=128713\n"
                                                 "https://huggingface.co/owner/repo/blob/main/model.safetensors",
                                     layout=widgets.Layout(width="100%", height="90px"))
        self.kind = widgets.Dropdown(options=[("auto", "auto")] + [(k, k) for k in KINDS], value="auto",
                                     description="Save as", style={"description_width": "initial"},
                                     layout=widgets.Layout(width="220px"))
        self.button = widgets.Button(description="Download", button_style="primary", icon="download")
        self.message = widgets.HTML()
        self.rows_box = widgets.VBox()
        self.button.on_click(self.start)
        intro = widgets.HTML(message("Paste model links, one per line: CivitAI, Hugging Face, Google Drive or any "
                                     "direct link. 'auto' puts each file in the right folder."))
        hint = widgets.HTML(message("To cancel, press the cell's stop button (■): the partial file is kept and the "
                                    "next Download resumes it."))
        self.widget = widgets.VBox([intro, self.urls, widgets.HBox([self.kind, self.button]), hint, self.message,
                                    self.rows_box])

    def start(self, _=None) -> None:
        """Download every URL in the box, one after another, updating the rows live."""
        urls = parse_urls(self.urls.value)
        if not urls:
            self.message.value = message("Paste at least one link in the box above.", "warn")
            return
        kind = None if self.kind.value == "auto" else self.kind.value
        self.rows = [DownloadRow(url) for url in urls]
        self.rows_box.children = [row.widget for row in self.rows]
        self.message.value = message(f"downloading {len(urls)} file{'s' if len(urls) > 1 else ''} into {self.models_dir}", "info")
        self.button.disabled = True
        try:
            interrupted = pump(lambda emit, cancel: self._work(urls, kind, emit, cancel), self._apply,
                               on_interrupt=lambda: self.message.__setattr__(
                                   "value", message("stopping: keeping the partial file…", "warn")))
        finally:
            self.button.disabled = False
        for row in self.rows:
            if interrupted and row.state in ("waiting", "running"):
                row.cancelled()
        done = [row.path for row in self.rows if row.state == "done"]
        failed = sum(row.state == "error" for row in self.rows)
        summary = f"{len(done)} of {len(self.rows)} done"
        if failed:
            summary += f", {failed} failed"
        if interrupted:
            summary += ", cancelled"
        self.message.value = message(summary, "ok" if len(done) == len(self.rows) else "warn")
        if done and self.on_downloaded is not None:
            self.on_downloaded(done)

    def _work(self, urls: list[str], kind: Optional[str], emit, cancel: threading.Event) -> None:
        """Worker thread: run the downloads in order and emit (row index, event or outcome)."""
        for index, url in enumerate(urls):
            if cancel.is_set():
                break
            emit((index, "start"))
            reported: list = []  # download() emits its own Error event before it raises: one report per row

            def relay(event, i=index, seen=reported) -> None:
                if isinstance(event, (Error, Cancelled)):
                    seen.append(event)
                emit((i, event))

            try:
                path = self._download(url, kind=kind, models_dir=self.models_dir, tokens=self.tokens, cancel=cancel,
                                      on_event=relay)
            except (DownloadCancelled, KeyboardInterrupt):
                if not reported:
                    emit((index, Cancelled(job=redact_url(url))))
                break
            except ColabSDError as err:
                if not reported:
                    emit((index, Error(message=redact(err), job=redact_url(url))))
            except Exception as err:  # a bug still ends as one readable line on its row
                log.debug("download failed unexpectedly", exc_info=True)
                emit((index, Error(message=redact(f"{type(err).__name__}: {err}"), job=redact_url(url))))
            else:
                emit((index, ("path", path)))

    def _apply(self, message_) -> None:
        index, item = message_
        row = self.rows[index]
        if item == "start":
            row.start()
        elif isinstance(item, tuple) and item[0] == "path":
            # download()'s return value is the final word: the file may have moved from other/ to its kind folder
            # after Completed (probing), or be a folder (a diffusers repo); no Completed event at all is fine too.
            path = Path(item[1])
            if row.state != "done" or row.path != path:
                size = row.size if row.state == "done" else None
                if size is None:
                    size = folder_size(path)
                row.done(path, size, row.skipped)
        else:
            row.apply(item)
