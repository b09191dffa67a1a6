"""The one test HTTP server: real sockets on 127.0.0.1, behaviour scripted per route, every request recorded.

- `FakeServer`: a threaded server whose `dispatch(h)` answers each request (and `connect(h)` a proxy's
  CONNECT); the service fakes in `fakes/` (CivitAI, its storage host, the Hub and its CDN, the Drive proxy)
  subclass it. Requests are recorded as {server, method, host, path, full_path, query, headers}.
- `TestServer`: a `FakeServer` whose answers are `Route`s, looked up by path: real bytes with Range support
  that can, per request, fail with a status, drop the connection at an offset, stall, lie about the length,
  ignore Range, answer the wrong range or redirect.
- `serve_bytes` is the one Range / If-Range implementation (200, 206 or 416, like a CDN); `send` and
  `send_json` answer small bodies.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qsl, urlsplit

_CHUNK = 64 * 1024


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up mid-test is not a test failure
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

            def do_CONNECT(self):  # only a proxy fake (Drive, reached through HTTPS_PROXY) answers these
                fake.connect(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits for it, once per test.
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

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path_prefix: str = "") -> list[dict]:
        """Recorded requests whose path starts with `path_prefix`."""
        return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        h.url_path = parts.path
        h.query = dict(parse_qsl(parts.query))
        with self._lock:
            self.requests.append({"server": self.label, "method": h.command, "path": parts.path,
                                  "full_path": h.path, "query": dict(h.query), "headers": dict(h.headers),
                                  "host": (h.headers.get("Host") or "").split(":")[0].lower()})
        try:
            self.dispatch(h)
        except OSError:  # the client hung up (broken pipe, reset, a TLS error behind a proxy)
            h.close_connection = True

    def dispatch(self, h) -> None:  # pragma: no cover - overridden
        send(h, 404, b"not found", "text/plain")

    def connect(self, h) -> None:
        h.send_error(405, "not a proxy")


# ---------------------------------------------------------------------------------------------- answers


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


def asked_range(h, total: int, validator: Optional[str]) -> Optional[tuple[int, int]]:
    """(start, end) of a `Range: bytes=N-[M]` to honour (its If-Range, if any, equals `validator`), else None.

    A start at or past `total` gives (start, -1): unsatisfiable (416).
    """
    m = re.match(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
    if not m or h.headers.get("If-Range") not in (None, validator):
        return None
    start = int(m.group(1))
    if start >= total:
        return start, -1
    return start, min(int(m.group(2)) if m.group(2) else total - 1, total - 1)


def serve_bytes(h, data: bytes, *, etag: Optional[str] = None, last_modified: Optional[str] = None,
                headers: Optional[dict] = None, ctype: str = "application/octet-stream", status: int = 200,
                ranges: bool = True, wrong_range_start: bool = False, chunked: bool = False,
                extra_length: int = 0, cut_at: Optional[int] = None, stall_at: Optional[int] = None,
                stall_seconds: float = 0.0) -> None:
    """Answer with `data` like a CDN: 200 whole, 206 for an honoured Range, 416 past the end.

    Faults: `ranges=False` ignores Range; `wrong_range_start` answers 206 from byte 0 whatever was asked;
    `extra_length` announces that many bytes more than sent; `cut_at` / `stall_at` stop after N body bytes
    (closing, or hanging `stall_seconds` first). Range applies to a 200 only.
    """
    total, start, body = len(data), 0, data
    span = asked_range(h, total, etag or last_modified) if ranges and status == 200 else None
    if span and span[1] < 0:
        return send(h, 416, b"", "text/plain", {"Content-Range": f"bytes */{total}"})
    if span:
        start = 0 if wrong_range_start else span[0]
        body, status = data[start:span[1] + 1], 206
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    if ranges:
        h.send_header("Accept-Ranges", "bytes")
    if etag:
        h.send_header("ETag", etag)
    if last_modified:
        h.send_header("Last-Modified", last_modified)
    if status == 206:
        h.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{total}")
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if chunked:
        h.send_header("Transfer-Encoding", "chunked")
    else:
        h.send_header("Content-Length", str(len(body) + extra_length))
    cut = cut_at is not None or stall_at is not None or extra_length
    if cut:
        h.send_header("Connection", "close")
    h.end_headers()
    if h.command == "HEAD":
        return
    limit = min([len(body)] + [n for n in (cut_at, stall_at) if n is not None])
    try:
        _write_body(h, body[:limit], chunked and cut_at is None and stall_at is None)
        if stall_at is not None:
            time.sleep(stall_seconds)
        if cut:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:  # the client hung up
        h.close_connection = True


def _write_body(h, data: bytes, chunked: bool) -> None:
    for i in range(0, len(data), _CHUNK):
        piece = data[i:i + _CHUNK]
        h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
    if chunked:
        h.wfile.write(b"0\r\n\r\n")
    h.wfile.flush()


# ---------------------------------------------------------------------------------------------- routes


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    disposition: Optional[str] = None  # raw Content-Disposition value
    headers: dict = field(default_factory=dict)
    ranges: bool = True  # honour Range (206); False: always 200 full body
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    chunked: bool = False  # no Content-Length, Transfer-Encoding: chunked
    fail: list = field(default_factory=list)  # statuses to answer first, one per request, e.g. [500, 429]
    retry_after: Optional[str] = None  # sent with 429/503 failures
    drop_at: list = field(default_factory=list)  # per request: close the connection after this many body bytes
    stall_at: list = field(default_factory=list)  # per request: stop sending after N bytes and hang
    stall_seconds: float = 5.0
    lie_length: int = 0  # announce this many bytes more than sent (then close)
    redirect: Optional[str] = None  # Location (relative or absolute)
    redirect_status: int = 302
    require_header: Optional[tuple] = None  # (name, value) or else 401
    reject_header: Optional[str] = None  # a header whose presence gives 400 (e.g. Authorization on storage)
    wrong_range_start: bool = False  # answer 206 starting at 0 whatever was asked
    handler: Optional[Callable] = None  # full control: handler(request_handler) -> None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class TestServer(FakeServer):
    """`with TestServer() as srv: srv.route("/f.bin", Route(body=...)); srv.url("/f.bin")`."""

    __test__ = False  # not a pytest class
    label = "test"

    def __init__(self):
        super().__init__()
        self.routes: dict[str, Route] = {}

    def route(self, path: str, route: Route) -> Route:
        self.routes[path] = route
        return route

    def hits(self, path: str) -> list[dict]:
        """Recorded requests for exactly `path` (query ignored)."""
        return [r for r in self.requests if r["path"] == path]

    def dispatch(self, h) -> None:
        with self._lock:  # a route's per-request faults are taken in arrival order
            route = self.routes.get(h.url_path)
            failure = route.fail.pop(0) if route and route.fail else None
            drop = route.drop_at.pop(0) if route and route.drop_at else None
            stall = route.stall_at.pop(0) if route and route.stall_at else None
        if route is None:
            return send(h, 404, b"<html><title>404 Not Found</title></html>", "text/html")
        if route.handler:
            return route.handler(h)
        if route.reject_header and h.headers.get(route.reject_header):
            return send(h, 400, b'{"error":"unexpected credentials"}', "application/json")
        if route.require_header and h.headers.get(route.require_header[0]) != route.require_header[1]:
            return send(h, 401, b'{"error":"Unauthorized"}', "application/json")
        if failure is not None:
            extra = {"Retry-After": route.retry_after} if route.retry_after else {}
            return send(h, failure, b"<html><title>Server error</title></html>", "text/html", extra)
        if route.redirect:
            return send(h, route.redirect_status, b"", "text/plain", {"Location": route.redirect})
        headers = dict(route.headers)
        if route.disposition:
            headers = {"Content-Disposition": route.disposition, **headers}
        serve_bytes(h, route.body, etag=route.etag, last_modified=route.last_modified, headers=headers,
                    ctype=route.content_type, status=route.status, ranges=route.ranges,
                    wrong_range_start=route.wrong_range_start, chunked=route.chunked, extra_length=route.lie_length,
                    cut_at=drop, stall_at=stall, stall_seconds=route.stall_seconds)
