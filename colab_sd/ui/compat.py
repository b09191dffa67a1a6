"""The few places where ipywidgets 7.7 (what Colab ships) and 8 differ, and Colab's widget manager."""
from __future__ import annotations

import logging

import ipywidgets as widgets

from ..tokens import in_colab

log = logging.getLogger("colab_sd.ui")

IPYWIDGETS_MAJOR = int(widgets.__version__.split(".")[0])


def enable_colab_widgets() -> bool:
    """Turn on Colab's custom widget manager when (and only when) it is needed: Colab with ipywidgets 8.

    Colab renders ipywidgets 7 natively; version 8 widgets stay blank there without this call.
    """
    if not (in_colab() and IPYWIDGETS_MAJOR >= 8):
        return False
    try:
        from google.colab import output  # type: ignore

        output.enable_custom_widget_manager()
    except Exception:
        log.warning("could not enable Colab's custom widget manager; widgets may not show", exc_info=True)
        return False
    return True


def tabs(pages: list[tuple[str, widgets.Widget]]) -> widgets.Tab:
    """A Tab with titles; `set_title` exists in both 7 and 8 (8's `titles` trait does not exist in 7)."""
    tab = widgets.Tab(children=[page for _, page in pages])
    for index, (title, _) in enumerate(pages):
        tab.set_title(index, title)
    return tab
