"""Helpers for the widget tests: slow streaming routes, interrupting the main thread, reading widget state."""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from servers import Route


def slow_route(body: bytes, piece: int = 64 * 1024, pause: float = 0.15, name: Optional[str] = None) -> Route:
    """A route that sends `body` in pieces with a pause between them, honouring Range (for resume)."""
    route = Route(body=body)

    def handler(h):
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        data = body[start:]
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if name:
            h.send_header("Content-Disposition", f'attachment; filename="{name}"')
        h.end_headers()
        try:
            for i in range(0, len(data), piece):
                h.wfile.write(data[i:i + piece])
                h.wfile.flush()
                if route.slow:
                    time.sleep(pause)
        except OSError:
            h.close_connection = True

    route.handler = handler
    route.slow = True  # type: ignore[attr-defined]
    return route


def interrupt_main_when(condition: Callable[[], bool], timeout: float = 20.0) -> threading.Thread:
    """Send SIGINT to the main thread (what Colab's stop button does to the kernel) once `condition()` holds."""
    main = threading.main_thread().ident

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def part_size(folder: Path) -> int:
    parts = [p for p in Path(folder).glob("*.part")]
    return parts[0].stat().st_size if parts else 0


def sha256(path: os.PathLike | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def all_states(widget) -> list[dict]:
    """The synced state of a widget and every widget below it (what a notebook could save)."""
    from ipywidgets import Widget

    seen, out, todo = set(), [], [widget]
    while todo:
        w = todo.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        out.append(w.get_state())
        for key in w.keys:
            value = getattr(w, key, None)
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(item, Widget):
                    todo.append(item)
    return out
