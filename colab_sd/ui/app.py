"""The app: Tokens, Download, Library and Generate tabs over one models folder and one token store."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import ipywidgets as widgets

from ..library import ensure_layout, models_root
from ..tokens import TokenStore
from .civitai_panel import CivitaiPanel
from .compat import tabs
from .download_panel import DownloadPanel
from .html import message
from .library_panel import LibraryPanel
from .tokens_panel import TokensPanel

log = logging.getLogger("colab_sd.ui")


class App:
    """Holds the panels; `app.widget` is what gets displayed. Tests reach the parts through the attributes."""

    def __init__(self, models_dir=None, outputs_dir=None, tokens: Optional[TokenStore] = None):
        self.models_dir = ensure_layout(models_root(models_dir))
        self.outputs_dir = Path(outputs_dir).expanduser() if outputs_dir else None
        self.tokens = tokens if tokens is not None else TokenStore()
        self.tokens_panel = TokensPanel(self.tokens)
        self.library = LibraryPanel(self.models_dir)
        self.library.civitai.tokens = self.tokens
        self.generate = _generate_panel(self)
        self.library.on_change = self._library_changed
        self.download = DownloadPanel(self.models_dir, self.tokens, on_downloaded=lambda paths: self.library.refresh())
        self.civitai = CivitaiPanel(self.models_dir, self.tokens, on_downloaded=lambda paths: self.library.refresh(),
                                    on_recreated=self._recreated)
        generate_page = self.generate.widget if self.generate is not None else widgets.HTML(message(
            "Generation needs torch and diffusers: pip install 'colab-sd[generation]' (Colab already has them).", "warn"))
        self.tabs = tabs([("Download", self.download.widget), ("Library", self.library.widget),
                          ("Generate", generate_page), ("CivitAI", self.civitai.widget),
                          ("Tokens", self.tokens_panel.widget)])
        title = widgets.HTML("<b>colab_sd</b> · Stable Diffusion workstation "
                             + message(f"· models in {self.models_dir}"))
        self.widget = widgets.VBox([title, self.tabs])
        self._library_changed(self.library.entries)
        # Files may also arrive by other ways (Drive, the file browser, `colab-sd download`): rescan on the way in.
        self.tabs.observe(self._tab_changed, names="selected_index")

    def _tab_changed(self, change) -> None:
        if change["new"] in (1, 2):  # Library, Generate
            self.library.refresh()

    def _library_changed(self, entries) -> None:
        if self.generate is not None:
            self.generate.set_library(entries)

    def _recreated(self, result) -> None:
        """A recreated image's settings go into the Generate panel, which is then shown."""
        if self.generate is None:
            return
        from .civitai_recreate import fill_generate

        left = fill_generate(self.generate, result, self.library.refresh())
        missing = [r.line() for r in result.missing] + [f"not set: {item}" for item in left]
        ready = len(result.resources) - len(result.missing)
        self.generate.status.value = message(f"filled from {result.source}: {ready} of {len(result.resources)} "
                                             "resources ready" + (" · " + "; ".join(missing) if missing else "")
                                             + " · press Generate", "warn" if missing else "info")
        self.show("Generate")

    def show(self, tab: str) -> None:
        """Switch to a tab by its title."""
        titles = ["Download", "Library", "Generate", "CivitAI", "Tokens"]
        self.tabs.selected_index = titles.index(tab)

    def __repr__(self) -> str:
        return f"<colab_sd app: models in {self.models_dir}>"


def _generate_panel(app: "App"):
    """The Generate panel, or None when the generation stack is not installed (the other tabs still work)."""
    import importlib.util

    missing = [name for name in ("torch", "diffusers") if importlib.util.find_spec(name) is None]
    if missing:
        log.info("generation unavailable: %s not installed", ", ".join(missing))
        return None
    from .generate_panel import GeneratePanel

    return GeneratePanel(app.models_dir, app.outputs_dir, tokens=app.tokens)
