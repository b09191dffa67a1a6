"""Thumbnails for the CivitAI panel: small CDN sizes, fetched by a few workers, applied on the main thread.

Why this shape: Colab only sends widget values set on the main thread while a callback runs (pump.py). So a
callback starts the fetches in a worker thread (four at a time, each a small `width=320` webp/jpeg), and pumps
each finished image into its widget as it arrives: the grid shows at once, pictures fill in, and Colab's stop
button ends the wait. Thumbnails are fetched without any credentials; bytes are kept in memory (the same card
opened twice is not fetched twice).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Optional

import ipywidgets as widgets

from ..civitai import levels
from ..civitai.client import fetch_image

log = logging.getLogger("colab_sd.ui")

WORKERS = 4
_KEEP = 300
_cache: "OrderedDict[str, tuple[bytes, str]]" = OrderedDict()
_lock = threading.Lock()

# A neutral 1×1 GIF while a picture loads (an empty Image widget collapses the card).
PLACEHOLDER = bytes.fromhex("47494638396101000100800000dddddd00000021f90401000000002c00000000010001000002024401003b")


def image_widget(width: int = 160) -> widgets.Image:
    return widgets.Image(value=PLACEHOLDER, format="gif",
                         layout=widgets.Layout(width=f"{width}px", height=f"{width * 4 // 3}px", object_fit="cover"))


def get(url: str) -> tuple[bytes, str]:
    """(bytes, content type) of an image URL, from memory or the CDN (no credentials). Raises DownloadError."""
    with _lock:
        if url in _cache:
            _cache.move_to_end(url)
            return _cache[url]
    found = fetch_image(url)
    with _lock:
        _cache[url] = found
        while len(_cache) > _KEEP:
            _cache.popitem(last=False)
    return found


def fetch_all(jobs: list[tuple[object, str]], emit: Callable, cancel: threading.Event, width: int) -> None:
    """Worker side: for each (key, image URL) fetch the `width` size and emit ("thumb", key, bytes, type), or
    ("thumb-failed", key, reason); stops handing out work once `cancel` is set."""
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="colab_sd-thumb") as pool:
        futures = {}
        for key, url in jobs:
            if cancel.is_set():
                break
            futures[pool.submit(get, levels.sized(url, width))] = key
        for future in as_completed(futures):
            key = futures[future]
            try:
                data, ctype = future.result()
            except Exception as err:  # a missing thumbnail is a grey box, not a failed search
                log.debug("thumbnail %s failed: %s", key, err)
                emit(("thumb-failed", key, str(err)))
                continue
            emit(("thumb", key, data, ctype))


def show(widget: widgets.Image, data: bytes, ctype: Optional[str]) -> None:
    """Main thread: put fetched bytes into an Image widget."""
    fmt = (ctype or "image/jpeg").split("/")[-1].split(";")[0].strip() or "jpeg"
    widget.format = fmt
    widget.value = data
