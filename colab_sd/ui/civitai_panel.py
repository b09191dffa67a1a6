"""CivitAI tab: search and browse with thumbnails, a model's page, Download with the live bar, Recreate.

Search runs in a worker thread pumped by the click (pump.py): the answer builds the grid at once, thumbnails
(the CDN's 320 px size, four fetches at a time, no credentials) fill in as they arrive. Content is safe by
default: PG, decided per image by its own level, so a PG model's mature previews stay hidden too. Downloads go
through the Download tab's own machinery (its rows, bars and resume) with the file's own link.
"""
from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from typing import Callable, Optional

import ipywidgets as widgets

from ..civitai import Client, SearchQuery, catalog, levels, search
from ..errors import ColabSDError
from ..tokens import TokenStore, redact
from . import thumbs
from .civitai_model import ModelView
from .civitai_recreate import RecreateBox
from .download_panel import DownloadPanel
from .html import message
from .pump import pump

log = logging.getLogger("colab_sd.ui")

TYPE_CHOICES = [("Any type", ""), ("Checkpoint", "checkpoint"), ("LoRA", "lora"), ("LoCon", "locon"),
                ("DoRA", "dora"), ("Embedding", "embedding"), ("VAE", "vae"), ("ControlNet", "controlnet"),
                ("Upscaler", "upscaler")]
LEVEL_CHOICES = [("PG (safe)", "PG"), ("PG-13", "PG13"), ("R", "R"), ("X", "X"), ("XXX", "XXX")]
CARD_WIDTH = 160


class Card:
    """One result in the grid: thumbnail, name, type · base model, downloads and likes, and Open."""

    def __init__(self, card: catalog.Card, open_: Callable[["Card"], None]):
        self.card = card
        self.image = thumbs.image_widget(CARD_WIDTH)
        base = ", ".join(card.base_models[:2]) or "?"
        rating = f" · ★ {card.rating:.1f}" if card.rating else ""
        hidden = "" if card.image else "<br>" + (message("preview above the content level", "warn")
                                                 if card.hidden_images else message("no preview"))
        self.text = widgets.HTML(
            f"<div style='width:{CARD_WIDTH}px;font-size:12px;line-height:1.3'><b>{escape(card.name)}</b><br>"
            f"{escape(card.type)} · {escape(base)}<br>⬇ {card.downloads} · ♥ {card.thumbs_up}{rating}{hidden}</div>")
        self.button = widgets.Button(description="Open", icon="folder-open",
                                     layout=widgets.Layout(width=f"{CARD_WIDTH}px"))
        self.button.on_click(lambda _: open_(self))
        self.widget = widgets.VBox([self.image, self.text, self.button],
                                   layout=widgets.Layout(width=f"{CARD_WIDTH + 12}px", padding="4px",
                                                         border="1px solid #e0e0e0", margin="0 6px 6px 0"))


class CivitaiPanel:
    """The tab. Tests drive it like a user: set `query`, click `search_button`, click a card's Open, the model
    view's Download, a preview's Recreate."""

    def __init__(self, models_dir, tokens: Optional[TokenStore] = None,
                 on_downloaded: Optional[Callable[[list], None]] = None, on_recreated: Optional[Callable] = None):
        self.models_dir = Path(models_dir)
        self.tokens = tokens if tokens is not None else TokenStore()
        self.cards: list[Card] = []
        self.page: Optional[catalog.Page] = None
        self.query_used: Optional[SearchQuery] = None
        label = {"description_width": "initial"}
        self.query = widgets.Text(placeholder="search CivitAI: a style, a character, a checkpoint…",
                                  layout=widgets.Layout(width="320px"))
        self.type = widgets.Dropdown(options=TYPE_CHOICES, value="", layout=widgets.Layout(width="130px"))
        self.base = widgets.Dropdown(options=[("Any base model", "")] + [(b, b) for b in catalog.BASE_MODELS],
                                     value="", layout=widgets.Layout(width="150px"))
        self.sort = widgets.Dropdown(options=catalog.SORTS, value="Highest Rated", layout=widgets.Layout(width="160px"))
        self.period = widgets.Dropdown(options=catalog.PERIODS, value="AllTime", layout=widgets.Layout(width="110px"))
        self.level = widgets.Dropdown(options=LEVEL_CHOICES, value="PG", description="Content", style=label,
                                      layout=widgets.Layout(width="170px"))
        self.search_button = widgets.Button(description="Search", icon="search", button_style="primary")
        self.more_button = widgets.Button(description="More results", icon="angle-double-down")
        self.status = widgets.HTML()
        self.grid = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.more_button.layout.display = "none"
        self.search_button.on_click(self.search)
        self.more_button.on_click(self.more)
        # Downloads reuse the Download tab's machinery (rows, live bars, resume); only its rows are shown here.
        self.downloader = DownloadPanel(self.models_dir, self.tokens, on_downloaded=on_downloaded)
        self.model_view = ModelView(self.download, self.recreate_image, lambda: self.tokens.get("civitai") is not None)
        self.recreate_box = RecreateBox(self.models_dir, self.tokens, on_result=on_recreated,
                                        on_downloaded=on_downloaded)
        self.widget = widgets.VBox([
            widgets.HBox([self.query, self.type, self.base, self.search_button]),
            widgets.HBox([self.sort, self.period, self.level]), self.status, self.grid, self.more_button,
            self.model_view.widget, self.downloader.message, self.downloader.rows_box,
            widgets.HTML("<hr style='margin:10px 0'>"), self.recreate_box.widget])

    # -- searching ---------------------------------------------------------------------------------------

    def build_query(self, cursor: Optional[str] = None) -> SearchQuery:
        return SearchQuery.build(self.query.value, types=[self.type.value] if self.type.value else [],
                                 base_models=[self.base.value] if self.base.value else [], sort=self.sort.value,
                                 period=self.period.value, level=self.level.value, limit=20, cursor=cursor)

    def search(self, _=None) -> None:
        """A new search: the grid is replaced."""
        try:
            query = self.build_query()
        except ColabSDError as err:
            self.status.value = message(str(err), "error")
            return
        self.cards, self.grid.children = [], []
        self.model_view.widget.layout.display = "none"
        self._run(query)

    def more(self, _=None) -> None:
        """The next page (by cursor), added below."""
        if self.page is None or not self.page.next_cursor or self.query_used is None:
            return
        self._run(SearchQuery(**{**self.query_used.__dict__, "cursor": self.page.next_cursor}))

    def _run(self, query: SearchQuery) -> None:
        self.query_used = query
        self.status.value = message("searching CivitAI…", "info")
        self.search_button.disabled = self.more_button.disabled = True
        first = len(self.cards)
        outcome: dict = {}

        def work(emit, cancel):
            try:
                page = search(Client(self.tokens), query)
            except ColabSDError as err:
                outcome["error"] = redact(err)
                return
            emit(("page", page))
            jobs = [(first + i, card.image["url"]) for i, card in enumerate(page.cards) if card.image]
            thumbs.fetch_all(jobs, emit, cancel, levels.THUMB_WIDTH)

        try:
            pump(work, self._apply)
        except Exception as err:  # a bug: one line here, details in the log
            log.debug("search failed", exc_info=True)
            outcome["error"] = redact(f"{type(err).__name__}: {err}")
        finally:
            self.search_button.disabled = self.more_button.disabled = False
        if "error" in outcome:
            self.status.value = message(f"✗ {outcome['error']}", "error")
            return
        count = len(self.cards)
        more = self.page is not None and bool(self.page.next_cursor)
        self.more_button.layout.display = "" if more else "none"
        self.status.value = message(f"{count} model{'s' if count != 1 else ''}" + (" · more below" if more else "")
                                    if count else "nothing found: try fewer filters or a longer period", "ok"
                                    if count else "warn")

    def _apply(self, item) -> None:
        if item[0] == "page":
            self.page = item[1]
            new = [Card(card, self.open) for card in self.page.cards]
            self.cards += new
            self.grid.children = [c.widget for c in self.cards]
            self.status.value = message(f"{len(self.cards)} models · loading pictures…", "info")
        elif item[0] == "thumb" and item[1] < len(self.cards):
            thumbs.show(self.cards[item[1]].image, item[2], item[3])

    # -- a model -----------------------------------------------------------------------------------------

    def open(self, card: Card) -> None:
        """Show a model's page (from the search answer: no request) and fetch its preview pictures."""
        base = self.page.base if self.page else ""
        level = self.query_used.level if self.query_used else levels.PG
        self.model_view.show(card.card.raw, base, level)
        jobs = self.model_view.preview_jobs()
        if jobs:
            pump(lambda emit, cancel: thumbs.fetch_all(jobs, emit, cancel, levels.PREVIEW_WIDTH), self.model_view.apply)

    def download(self, url: str, label: str) -> None:
        """Send one file to the downloader (its row and live bar show here)."""
        self.downloader.urls.value = url
        self.downloader.kind.value = "auto"
        self.downloader.start()

    def recreate_image(self, page_url: str) -> None:
        self.recreate_box.start(source=page_url)
