"""The Library's CivitAI side: previews beside the models, "Identify unknown files", "Check for updates" and the
update badge. The look-ups run in a worker pumped by the click (pump.py); the answers land in the sidecars, and
the Library is redrawn from them.
"""
from __future__ import annotations

import base64
import io
import logging
from html import escape
from typing import Optional

import ipywidgets as widgets

from ..errors import ColabSDError
from ..library import ModelEntry
from ..tokens import TokenStore, redact
from .html import message
from .pump import pump

log = logging.getLogger("colab_sd.ui")

THUMB = 96  # px: previews are kept at 450 px on disk, shown small here so a saved notebook stays light


def civitai_cell(entry: ModelEntry) -> str:
    """Plain text for the Library table: the CivitAI model/version and, when there is one, the update badge."""
    info = entry.meta.get("civitai") or {}
    if not info.get("model_id"):
        return ""
    text = f"{info.get('model_name') or ''} {info.get('version_name') or ''}".strip()
    update = info.get("update")
    if isinstance(update, dict) and update.get("name"):
        text += f" · ⬆ {update['name']} available"
    return text


def _thumbnail(path) -> Optional[str]:
    """A small JPEG data URI of a saved preview (downscaled when Pillow is there)."""
    try:
        data = path.read_bytes()
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                img = img.convert("RGB")
                img.thumbnail((THUMB, THUMB * 2))
                out = io.BytesIO()
                img.save(out, format="JPEG", quality=80)
                data, kind = out.getvalue(), "jpeg"
        except ImportError:
            kind = path.suffix.lstrip(".").replace("jpg", "jpeg")
    except OSError:
        return None
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def gallery_html(entries: list) -> str:
    """The models that have a preview, as small cards with their update badge."""
    from ..civitai.local import preview_path

    cards = []
    for entry in entries:
        preview = preview_path(entry.path) if entry.path.is_file() else None
        uri = _thumbnail(preview) if preview else None
        if uri is None:
            continue
        badge = civitai_cell(entry)
        update = "⬆" in badge
        cards.append(
            f"<div style='display:inline-block;width:{THUMB + 24}px;margin:0 8px 8px 0;vertical-align:top;"
            f"font-size:11px'><img src='{uri}' style='width:{THUMB}px;border-radius:4px' "
            f"title='{escape(entry.name)}'><br>{escape(entry.name)}"
            + (f"<br><span style='color:#1a5fb4;font-weight:bold'>{escape(badge.split(' · ')[-1])}</span>"
               if update else "") + "</div>")
    return "<h4 style='margin:10px 0 4px 0'>Previews</h4>" + "".join(cards) if cards else ""


class LibraryCivitai:
    """Buttons and the previews strip; `panel` is the LibraryPanel (its entries and refresh)."""

    def __init__(self, panel, tokens: Optional[TokenStore] = None):
        self.panel = panel
        self.tokens = tokens
        self.identify_button = widgets.Button(description="Identify unknown files", icon="question-circle",
                                              layout=widgets.Layout(width="auto"),
                                              tooltip="look up files without CivitAI details by their sha256, on "
                                                      "civitai.com and civitai.red")
        self.updates_button = widgets.Button(description="Check for updates", icon="arrow-circle-up",
                                             layout=widgets.Layout(width="auto"),
                                             tooltip="ask CivitAI whether a newer version of each model exists")
        self.status = widgets.HTML()
        self.gallery = widgets.HTML()
        self.identify_button.on_click(self.identify)
        self.updates_button.on_click(self.check_updates)
        self.buttons = [self.identify_button, self.updates_button]
        self.widget = widgets.VBox([self.status, self.gallery])

    def render(self, entries: list) -> None:
        self.gallery.value = gallery_html(entries)

    def _client(self):
        from ..civitai import Client

        return Client(self.tokens if self.tokens is not None else TokenStore())

    def _run(self, job, describe) -> None:
        outcome: dict = {}

        def work(emit, cancel):
            try:
                outcome["done"] = job(list(self.panel.entries), self._client())
            except ColabSDError as err:
                outcome["error"] = redact(err)

        for button in self.buttons:
            button.disabled = True
        self.status.value = message("asking CivitAI…", "info")
        try:
            pump(work, lambda _: None)
        finally:
            for button in self.buttons:
                button.disabled = False
        if "error" in outcome:
            self.status.value = message(f"✗ {outcome['error']}", "error")
            return
        self.panel.refresh()
        self.status.value = describe(outcome.get("done") or [])

    def identify(self, _=None) -> None:
        from ..civitai.local import identify

        def describe(done):
            if not done:
                return message("every model file already has its CivitAI details", "ok")
            known = [d for d in done if d.found]
            names = ", ".join(f"{d.entry.name} = {d.found['civitai'].get('model_name')}" for d in known)
            return message(f"identified {len(known)} of {len(done)}" + (f": {names}" if names else
                                                                         " (not on CivitAI)"), "ok")

        self._run(identify, describe)

    def check_updates(self, _=None) -> None:
        from ..civitai.local import updates

        def describe(done):
            newer = [d for d in done if d.newer]
            if not done:
                return message("no CivitAI models to check (identify them first)", "warn")
            if not newer:
                return message(f"all {len(done)} CivitAI model{'s' if len(done) > 1 else ''} up to date", "ok")
            return message("newer versions: " + ", ".join(f"{d.entry.name} → {d.newer['name']}" for d in newer),
                           "info")

        self._run(updates, describe)
