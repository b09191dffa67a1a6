"""A real HTTP server on 127.0.0.1 whose misbehaviour the tests script, route by route.

Each route serves real bytes with Range support and can, per request, fail with a status, drop
the connection at an offset, stall, lie about its length, ignore Range, or redirect. Every
request is recorded (method, path, headers) so tests can assert on what the client sent.
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional


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


class TestServer:
    """`with TestServer() as srv: srv.route("/f.bin", Route(body=...)); srv.url("/f.bin")`."""

    __test__ = False  # not a pytest class

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server._handle(self)

            def do_HEAD(self):
                server._handle(self, head=True)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # clients hanging up mid-test are expected
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, path: str, route: Route) -> Route:
        self.routes[path] = route
        return route

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    # ------------------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, head: bool = False) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.requests.append({"method": h.command, "path": path, "full_path": h.path, "headers": dict(h.headers)})
            route = self.routes.get(path)
            failure = route.fail.pop(0) if route and route.fail else None
            drop = route.drop_at.pop(0) if route and route.drop_at else None
            stall = route.stall_at.pop(0) if route and route.stall_at else None
        if route is None:
            return self._send_simple(h, 404, b"<html><title>404 Not Found</title></html>", "text/html")
        if route.handler:
            return route.handler(h)
        if route.reject_header and h.headers.get(route.reject_header):
            return self._send_simple(h, 400, b'{"error":"unexpected credentials"}', "application/json")
        if route.require_header and h.headers.get(route.require_header[0]) != route.require_header[1]:
            return self._send_simple(h, 401, b'{"error":"Unauthorized"}', "application/json")
        if failure is not None:
            extra = {"Retry-After": route.retry_after} if route.retry_after else {}
            return self._send_simple(h, failure, b"<html><title>Server error</title></html>", "text/html", extra)
        if route.redirect:
            return self._send_simple(h, route.redirect_status, b"", "text/plain", {"Location": route.redirect})
        body = route.body
        start, status = 0, route.status
        total = len(body)
        rng = h.headers.get("Range")
        if rng and route.ranges and status == 200:
            if_range = h.headers.get("If-Range")
            current = route.etag or route.last_modified
            if if_range is None or if_range == current:
                m = re.match(r"bytes=(\d+)-(\d*)", rng)
                if m:
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else total - 1
                    if start >= total:
                        return self._send_simple(h, 416, b"", "text/plain", {"Content-Range": f"bytes */{total}"})
                    end = min(end, total - 1)
                    if route.wrong_range_start:
                        start = 0
                    body = body[start:end + 1]
                    status = 206
        h.send_response(status)
        h.send_header("Content-Type", route.content_type)
        if route.disposition:
            h.send_header("Content-Disposition", route.disposition)
        if route.ranges:
            h.send_header("Accept-Ranges", "bytes")
        if route.etag:
            h.send_header("ETag", route.etag)
        if route.last_modified:
            h.send_header("Last-Modified", route.last_modified)
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{total}")
        for k, v in route.headers.items():
            h.send_header(k, v)
        if route.chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(len(body) + route.lie_length))
        if route.lie_length or drop is not None:
            h.send_header("Connection", "close")
        h.end_headers()
        if head:
            return
        limit = len(body)
        if drop is not None:
            limit = min(limit, drop)
        if stall is not None:
            limit = min(limit, stall)
        try:
            self._write_body(h, body[:limit], route.chunked and drop is None and stall is None)
            if stall is not None:
                time.sleep(route.stall_seconds)
            if drop is not None or stall is not None or route.lie_length:
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True

    @staticmethod
    def _write_body(h, data: bytes, chunked: bool) -> None:
        step = 64 * 1024
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            if chunked:
                h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                h.wfile.write(piece)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    @staticmethod
    def _send_simple(h, status: int, body: bytes, ctype: str, headers: Optional[dict] = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
