"""A fake Google Drive that the real gdown reaches at its hard-coded https://drive.google.com URLs.

gdown talks through requests, which honours `HTTPS_PROXY` and `REQUESTS_CA_BUNDLE`; this fake is
that proxy: it accepts `CONNECT drive.google.com:443` (and drive.usercontent.google.com,
docs.google.com, accounts.google.com), terminates TLS with a throw-away certificate for those
names (made with the `openssl` command; the test trusts it through REQUESTS_CA_BUNDLE), and
answers like Drive does:

- `drive.google.com/uc?id=ID` → 303 to `drive.usercontent.google.com/download?id=ID&export=download`;
- a small file comes back with Content-Disposition; a large one first gets the "can't scan for
  viruses" page whose `#download-form` carries `confirm` and `uuid`;
- a file over its quota gets the "Too many users have viewed or downloaded this file" page;
- a private file redirects to the Google sign-in page; a missing one is a 404 page;
- `drive.google.com/embeddedfolderview?id=ID` lists a folder (what gdown >= 6 reads).

`env()` gives the environment a test sets (with monkeypatch) to put the fake behind gdown.
"""
from __future__ import annotations

import hashlib
import html
import secrets
import socketserver
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from servers import FakeServer, serve_bytes
from servers import send as _send

HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com", "accounts.google.com")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for the Google hosts above; returns (cert, key)."""
    cert, key = folder / "fake-google.pem", folder / "fake-google.key"
    if not cert.exists():
        folder.mkdir(parents=True, exist_ok=True)
        san = ",".join(f"DNS:{h}" for h in HOSTS)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=Fake Google",
                        "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True)
    return cert, key


@dataclass
class DriveFile:
    id: str
    name: str
    data: bytes
    large: bool = False  # Drive cannot virus-scan it: a confirmation page comes first
    quota: bool = False  # "Too many users have viewed or downloaded this file recently"
    private: bool = False  # not shared: Drive sends the browser to the sign-in page


@dataclass
class DriveFolder:
    id: str
    name: str
    children: list = field(default_factory=list)  # DriveFile | DriveFolder
    private: bool = False


def new_id() -> str:
    """A Drive-shaped id (33 characters; gdown's folder parser wants at least 25)."""
    return "1" + secrets.token_urlsafe(24)[:32].replace("-", "x").replace("_", "y")


class FakeDrive(FakeServer):
    label = "drive"

    def __init__(self, cert_dir: Path):
        super().__init__()
        self.cert, self.key = make_certificate(Path(cert_dir))
        self.files: dict[str, DriveFile] = {}
        self.folders: dict[str, DriveFolder] = {}
        self._uuids: dict[str, str] = {}
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(str(self.cert), str(self.key))
        self.proxy = self.base

    def connect(self, h) -> None:
        """`CONNECT drive.google.com:443`: answer as that host, with TLS, on the same connection."""
        host = h.path.rsplit(":", 1)[0].lower()
        if host not in HOSTS:
            h.send_error(403, "this proxy only knows Google Drive")
            return
        h.send_response(200, "Connection established")
        h.end_headers()
        try:
            tls = self._tls.wrap_socket(h.connection, server_side=True)
        except (ssl.SSLError, OSError):
            h.close_connection = True
            return
        h.connection = tls
        h.rfile = tls.makefile("rb", -1)
        h.wfile = socketserver._SocketWriter(tls)
        h.close_connection = False

    def env(self) -> dict:
        """Environment that routes requests (so gdown) through this fake and trusts its certificate."""
        return {"HTTPS_PROXY": self.proxy, "https_proxy": self.proxy, "REQUESTS_CA_BUNDLE": str(self.cert),
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    # -- catalogue --------------------------------------------------------------------------------

    def add_file(self, name: str, data: bytes, **kw) -> DriveFile:
        f = DriveFile(new_id(), name, data, **kw)
        self.files[f.id] = f
        return f

    def add_folder(self, name: str, children: list, **kw) -> DriveFolder:
        folder = DriveFolder(new_id(), name, list(children), **kw)
        self.folders[folder.id] = folder
        for child in children:
            if isinstance(child, DriveFile):
                self.files[child.id] = child
        return folder

    # -- requests -----------------------------------------------------------------------------------

    def dispatch(self, h) -> None:
        host, path, query = (h.headers.get("Host") or "").split(":")[0].lower(), h.url_path, h.query
        if host == "drive.google.com" and path in ("/uc", "/open"):
            return self._uc(h, query)
        if host == "docs.google.com" and path == "/uc":
            return self._uc(h, query)
        if host == "drive.usercontent.google.com" and path in ("/download", "/u/0/uc", "/uc"):
            return self._download(h, query)
        if host == "drive.google.com" and path == "/embeddedfolderview":
            return self._folder_view(h, query.get("id", ""))
        if host == "accounts.google.com":
            return _send(h, 200, b"<!DOCTYPE html><html><head><title>Sign in - Google Accounts</title></head>"
                                 b"<body><form id=\"gaia_loginform\">Sign in</form></body></html>",
                         "text/html; charset=utf-8")
        _send(h, 404, _page("Not Found", "Sorry, the file you have requested does not exist."), "text/html")

    def _uc(self, h, query: dict) -> None:
        file_id = query.get("id", "")
        target = "https://drive.usercontent.google.com/download?" + urlencode({"id": file_id, "export": "download"})
        _send(h, 303, b"", "text/html; charset=UTF-8", {"Location": target})

    def _download(self, h, query: dict) -> None:
        f = self.files.get(query.get("id", ""))
        if f is None:
            return _send(h, 404, _page("Google Drive - 404", "Sorry, the file you have requested does not exist."),
                         "text/html; charset=utf-8")
        if f.private:
            return _send(h, 302, b"", "text/html; charset=UTF-8", {
                "Location": "https://accounts.google.com/ServiceLogin?" + urlencode({
                    "service": "wise", "passive": "1209600", "continue": f"https://drive.usercontent.google.com/"
                                                                         f"download?id={f.id}&export=download"})})
        if f.quota:
            return _send(h, 403, _page("Google Drive - Quota exceeded",
                                       "Too many users have viewed or downloaded this file recently. Please try "
                                       "accessing the file again later. If the file you are trying to access is "
                                       "particularly large or is shared with many people, it may take up to 24 "
                                       "hours to be able to view or download the file."), "text/html; charset=utf-8")
        if f.large and not (query.get("confirm") and query.get("uuid") == self._uuids.get(f.id)):
            uuid = self._uuids.setdefault(f.id, secrets.token_hex(8))
            form = (f'<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
                    f'<input type="submit" id="uc-download-link" value="Download anyway"/>'
                    f'<input type="hidden" name="id" value="{f.id}"><input type="hidden" name="export" '
                    f'value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" '
                    f'name="uuid" value="{uuid}"></form>')
            body = ("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
                    "<div class=\"uc-main\"><p class=\"uc-warning-caption\">Google Drive can't scan this file for "
                    f"viruses.</p><p>{html.escape(f.name)} is too large for Google to scan for viruses. Would you "
                    f"still like to download this file?</p>{form}</div></body></html>")
            return _send(h, 200, body.encode(), "text/html; charset=utf-8")
        _serve_file(h, f)

    def _folder_view(self, h, folder_id: str) -> None:
        folder = self.folders.get(folder_id)
        if folder is None or folder.private:
            return _send(h, 404, _page("Not Found", "Sorry, the file you have requested does not exist."),
                         "text/html; charset=utf-8")
        rows = []
        for child in folder.children:
            if isinstance(child, DriveFolder):
                href = f"https://drive.google.com/drive/folders/{child.id}"
            else:
                href = f"https://drive.google.com/file/d/{child.id}/view?usp=drive_web"
            rows.append(f'<div class="flip-entry"><a href="{href}" target="_blank"><div class="flip-entry-title">'
                        f"{html.escape(child.name)}</div></a></div>")
        body = (f"<!DOCTYPE html><html><head><title>{html.escape(folder.name)}</title></head><body>"
                f'<div class="flip-entries">{"".join(rows)}</div></body></html>')
        _send(h, 200, body.encode(), "text/html; charset=utf-8")


def _page(title: str, message: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>"
            f'<div class="uc-main"><p class="uc-error-caption">{html.escape(title)}</p>'
            f'<p class="uc-error-subcaption">{html.escape(message)}</p></div></body></html>').encode()


def _serve_file(h, f: DriveFile) -> None:
    headers = {"Content-Disposition": f"attachment; filename=\"{f.name}\"; filename*=UTF-8''{f.name}",
               "Last-Modified": "Tue, 01 Oct 2024 10:00:00 GMT"}
    serve_bytes(h, f.data, etag=f'"{hashlib.md5(f.data).hexdigest()}"', headers=headers)
