"""A threaded HTTP server on 127.0.0.1 that a fake subclasses: `dispatch(h)` answers each request.

Every request is recorded (server, method, path, query, headers) so tests can assert on what the
client sent; `serve_bytes` serves a file with Range / If-Range like a CDN does.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qsl, urlsplit


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is not a test failure
        pass


class FakeServer:
    """Start with `with Fake() as f:` or `.start()` / `.stop()`; `f.base` is `http://127.0.0.1:PORT`."""

    label = "fake"

    def __init__(self):
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                fake._handle(self)

            def do_HEAD(self):
                fake._handle(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        h.url_path = parts.path
        h.query = dict(parse_qsl(parts.query))
        with self._lock:
            self.requests.append({"server": self.label, "method": h.command, "path": parts.path,
                                  "query": dict(h.query), "headers": dict(h.headers)})
        try:
            self.dispatch(h)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def dispatch(self, h) -> None:  # pragma: no cover - overridden
        send(h, 404, b"not found", "text/plain")

    def hits(self, path_prefix: str = "") -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(path_prefix)]


def send(h, status: int, body: bytes = b"", ctype: str = "text/plain", headers: Optional[dict] = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)
    h.wfile.flush()


def send_json(h, status: int, data, headers: Optional[dict] = None) -> None:
    send(h, status, json.dumps(data).encode(), "application/json; charset=utf-8", headers)


def serve_bytes(h, data: bytes, *, etag: Optional[str] = None, headers: Optional[dict] = None,
                ctype: str = "application/octet-stream") -> None:
    """200 with the whole body, or 206 for a satisfiable Range whose If-Range (if any) still matches."""
    total, start, end, status = len(data), 0, len(data) - 1, 200
    rng = h.headers.get("Range")
    if_range = h.headers.get("If-Range")
    if rng and (if_range is None or if_range == etag):
        m = re.match(r"bytes=(\d+)-(\d*)", rng)
        if m:
            start = int(m.group(1))
            if start >= total:
                return send(h, 416, b"", "text/plain", {"Content-Range": f"bytes */{total}"})
            end = min(int(m.group(2)) if m.group(2) else total - 1, total - 1)
            status = 206
    body = data[start:end + 1]
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Accept-Ranges", "bytes")
    if etag:
        h.send_header("ETag", etag)
    if status == 206:
        h.send_header("Content-Range", f"bytes {start}-{end}/{total}")
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if h.command == "HEAD":
        return
    for i in range(0, len(body), 256 * 1024):
        h.wfile.write(body[i:i + 256 * 1024])
