"""Library: the models on disk by kind (name, size, base model, trigger words), refreshed after downloads."""
from __future__ import annotations

from typing import Callable, Optional

import ipywidgets as widgets

from ..library import KINDS, ModelEntry, list_models, models_root
from . import format as fmt
from .html import message, table
from .library_civitai import LibraryCivitai, civitai_cell


class LibraryPanel:
    """A table per kind that has models; `refresh()` rescans the folder."""

    def __init__(self, models_dir=None, on_change: Optional[Callable[[list[ModelEntry]], None]] = None):
        self.root = models_root(models_dir)
        self.on_change = on_change
        self.entries: list[ModelEntry] = []
        self.header = widgets.HTML()
        self.button = widgets.Button(description="Refresh", icon="refresh")
        self.table = widgets.HTML()
        self.button.on_click(self.refresh)
        self.civitai = LibraryCivitai(self)  # previews, Identify, Check for updates (the app gives it the tokens)
        self.widget = widgets.VBox([widgets.HBox([self.header, self.button] + self.civitai.buttons),
                                    self.civitai.status, self.table, self.civitai.widget])
        self.refresh()

    def refresh(self, _=None) -> list[ModelEntry]:
        self.entries = list_models(self.root) if self.root.is_dir() else []
        total = sum(e.size for e in self.entries)
        self.header.value = message(f"Models folder: {self.root} — {len(self.entries)} model"
                                    f"{'' if len(self.entries) == 1 else 's'}, {fmt.size(total)}", "info") + "&nbsp;&nbsp;"
        if not self.entries:
            self.table.value = message("No models yet: download some in the Download tab.")
        else:
            sections = []
            for kind in KINDS:
                rows = [[e.name, fmt.size(e.size), e.base_model or "", ", ".join(e.trigger_words), civitai_cell(e)]
                        for e in self.entries if e.kind == kind]
                if rows:
                    sections.append(f"<h4 style='margin:10px 0 4px 0'>{kind} ({len(rows)})</h4>"
                                    + table(["name", "size", "base model", "trigger words", "CivitAI"], rows))
            self.table.value = "".join(sections)
        self.civitai.render(self.entries)
        if self.on_change is not None:
            self.on_change(self.entries)
        return self.entries

    def names(self, kind: str) -> list[str]:
        return [e.name for e in self.entries if e.kind == kind]
