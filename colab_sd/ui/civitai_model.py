"""A CivitAI model's page inside the panel: versions, files (size, format, precision), trigger words, preview
images, what stands in the way of a download (said before it starts), and the Download button.

The page is built from the search answer itself (it already holds every version, file and preview), so opening
a card costs no request; only the preview pictures are fetched, at the CDN's 450 px size.
"""
from __future__ import annotations

from html import escape
from typing import Any, Callable, Mapping, Optional

import ipywidgets as widgets

from ..civitai import catalog, levels
from .html import message
from . import thumbs

PREVIEW_WIDTH = 160


class ModelView:
    """One model. `download(url, label)` and `recreate(image_page_url)` are the panel's; `load_previews(emit,
    cancel)` is the worker half of showing the preview pictures."""

    def __init__(self, download: Callable[[str, str], None], recreate: Callable[[str], None],
                 has_token: Callable[[], bool]):
        self._download, self._recreate, self._has_token = download, recreate, has_token
        self.model: dict = {}
        self.base = ""
        self.level = levels.PG
        self.title = widgets.HTML()
        self.version = widgets.Dropdown(description="Version", style={"description_width": "70px"},
                                        layout=widgets.Layout(width="420px"))
        self.file = widgets.Dropdown(description="File", style={"description_width": "70px"},
                                     layout=widgets.Layout(width="640px"))
        self.words = widgets.HTML()
        self.notes = widgets.HTML()
        self.button = widgets.Button(description="Download", button_style="primary", icon="download")
        self.previews = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.preview_images: list[widgets.Image] = []
        self.recreate_buttons: list[widgets.Button] = []
        self.version.observe(self._version_changed, names="value")
        self.button.on_click(self._download_clicked)
        self.widget = widgets.VBox([self.title, self.version, self.file, self.words, self.notes, self.button,
                                    self.previews], layout=widgets.Layout(border="1px solid #ddd", padding="8px",
                                                                          margin="8px 0"))
        self.widget.layout.display = "none"

    # -- showing a model ---------------------------------------------------------------------------------

    def show(self, model: Mapping[str, Any], base: str, level: int) -> None:
        self.model, self.base, self.level = dict(model), base, level
        stats = model.get("stats") or {}
        creator = (model.get("creator") or {}).get("username") or "?"
        self.title.value = (f"<h3 style='margin:4px 0'>{escape(str(model.get('name')))}</h3>"
                            + message(f"{model.get('type')} by {creator} · ⬇ {stats.get('downloadCount', 0)} · "
                                      f"♥ {stats.get('thumbsUpCount', 0)} · {base}/models/{model.get('id')}"))
        versions = list(model.get("modelVersions") or [])
        self.version.options = [(f"{v.get('name')} · {v.get('baseModel')}", i) for i, v in enumerate(versions)]
        self.widget.layout.display = ""
        if versions:
            self.version.value = 0
            self._version_changed()

    @property
    def current(self) -> dict:
        versions = list(self.model.get("modelVersions") or [])
        index = self.version.value if isinstance(self.version.value, int) else 0
        version = dict(versions[index]) if versions else {}
        version.setdefault("modelId", self.model.get("id"))
        version.setdefault("model", {"name": self.model.get("name"), "type": self.model.get("type")})
        return version

    def _version_changed(self, _=None) -> None:
        version = self.current
        files = list(version.get("files") or [])
        self.file.options = [(catalog.file_label(f), f.get("id")) for f in files]
        primary = next((f.get("id") for f in files if f.get("primary")), files[0].get("id") if files else None)
        self.file.value = primary
        words = [w for w in version.get("trainedWords") or [] if str(w).strip()]
        self.words.value = ("<b>Trigger words:</b> " + escape(", ".join(words))) if words else message(
            "No trigger words listed.")
        notes = catalog.access_notes(version, self._has_token())
        self.notes.value = "<br>".join(message(n, "warn") for n in notes)
        self.button.disabled = not catalog.can_download(version)
        images = list(version.get("images") or [])
        shown = [img for img in images if levels.shown(img, self.level) and (img.get("type") or "image") == "image"]
        hidden = len(images) - len(shown)
        self.preview_images, self.recreate_buttons, cells = [], [], []
        for img in shown:
            picture = thumbs.image_widget(PREVIEW_WIDTH)
            button = widgets.Button(description="Recreate", icon="magic", tooltip="fill the Generate panel with "
                                    "this image's settings, downloading what it used",
                                    layout=widgets.Layout(width=f"{PREVIEW_WIDTH}px"))
            button.on_click(lambda _, i=img: self._recreate(f"{self.base}/images/{i.get('id')}"))
            button.disabled = not img.get("meta") and not img.get("id")
            self.preview_images.append(picture)
            self.recreate_buttons.append(button)
            cells.append(widgets.VBox([picture, button], layout=widgets.Layout(margin="0 6px 6px 0")))
        if hidden:
            cells.append(widgets.HTML(message(f"{hidden} preview{'s' if hidden > 1 else ''} above the content level "
                                              "not shown")))
        self.previews.children = cells
        self._shown = shown

    def preview_jobs(self) -> list[tuple[int, str]]:
        """(index, CDN URL) of the preview pictures to fetch."""
        return [(i, img["url"]) for i, img in enumerate(getattr(self, "_shown", []))]

    def apply(self, item) -> None:
        """Main thread: a fetched preview (from `thumbs.fetch_all`)."""
        if item[0] == "thumb" and item[1] < len(self.preview_images):
            thumbs.show(self.preview_images[item[1]], item[2], item[3])

    # -- downloading ---------------------------------------------------------------------------------------

    def download_url(self) -> Optional[str]:
        """The chosen file's link: the version's download link naming the file by its own id (never rebuilt
        from type/format/fp, which CivitAI may answer with 404 for multi-file versions)."""
        version = self.current
        if not version.get("id") or self.file.value is None:
            return None
        return f"{self.base}/api/download/models/{version['id']}?fileId={self.file.value}"

    def _download_clicked(self, _=None) -> None:
        url = self.download_url()
        if url:
            version = self.current
            self._download(url, f"{self.model.get('name')} {version.get('name')}")
