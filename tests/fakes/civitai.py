"""A fake CivitAI: the v1 API (JSON shaped like the reference), the download endpoint with its
Bearer check, login redirect / 401 JSON / early-access 403 / 404, and a separate storage host
that serves the signed URLs and rejects any Authorization header (as real B2/R2 URLs must be
fetched without the CivitAI token).

    with FakeCivitai() as civ:
        civ.add_version(model_id=4384, version_id=128713, model_name="DreamShaper", model_type="Checkpoint",
                        files=[FakeFile(131004, "dreamshaper_8.safetensors", data)])
        os.environ["CIVITAI_ENDPOINT"] = civ.base
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import zlib
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote, urlencode

from .base import FakeServer, send, send_json, serve_bytes

TOKEN = "fake-civitai-token-0123456789"


@dataclass
class FakeFile:
    id: int
    name: str
    data: bytes
    type: str = "Model"
    format: str = "SafeTensor"
    size: Optional[str] = "pruned"
    fp: Optional[str] = "fp16"
    primary: bool = False
    served_name: Optional[str] = None  # the storage host's Content-Disposition name (CivitAI renames files)
    scan: str = "Success"  # "Pending": a fresh upload, no hashes yet
    corrupt: bool = False  # storage serves bytes that do not match the API's SHA256

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_json(self, version_id: int) -> dict:
        meta = {"format": self.format}
        if self.size:
            meta["size"] = self.size
        if self.fp:
            meta["fp"] = self.fp
        query = {k: v for k, v in (("type", self.type), ("format", self.format), ("size", self.size),
                                   ("fp", self.fp)) if v}
        entry = {"id": self.id, "name": self.name, "type": self.type, "sizeKB": len(self.data) / 1024,
                 "metadata": meta, "pickleScanResult": self.scan, "virusScanResult": self.scan,
                 "primary": self.primary,
                 # Real CivitAI always answers with civitai.com links, whatever mirror was asked.
                 "downloadUrl": f"https://civitai.com/api/download/models/{version_id}?{urlencode(query)}"}
        if self.scan == "Success":
            sha = self.sha256.upper()
            entry["hashes"] = {"AutoV2": sha[:10], "SHA256": sha, "CRC32": f"{zlib.crc32(self.data):08X}"}
        else:
            entry["hashes"] = {}
        return entry


@dataclass
class FakeVersion:
    id: int
    model_id: int
    name: str
    base_model: str
    trained_words: list
    files: list
    auth: Optional[str] = None  # None: public; "redirect": /login redirect; "json": 401 JSON without a token
    early_access_until: Optional[str] = None  # ISO date: 403 JSON with a deadline
    status: str = "Published"
    removed: bool = False  # the API still knows it but the download answers 404

    def to_json(self, model: "FakeModel") -> dict:
        data = {"id": self.id, "modelId": self.model_id, "name": self.name, "baseModel": self.base_model,
                "status": self.status,
                "availability": "EarlyAccess" if self.early_access_until else "Public",
                "trainedWords": list(self.trained_words),
                "model": {"name": model.name, "type": model.type, "nsfw": False},
                "downloadUrl": f"https://civitai.com/api/download/models/{self.id}",
                "files": [f.to_json(self.id) for f in self.files],
                "images": [{"url": "https://image.civitai.com/x/preview.jpeg", "nsfwLevel": 1,
                            "width": 512, "height": 768}]}
        if self.early_access_until:
            data["earlyAccessEndsAt"] = self.early_access_until
        return data


@dataclass
class FakeModel:
    id: int
    name: str
    type: str
    versions: list = field(default_factory=list)  # newest first, as the API lists them


class FakeStorage(FakeServer):
    """The signed-URL host: serves a file only for a signature it issued, never with Authorization."""

    label = "storage"

    def __init__(self):
        super().__init__()
        self.objects: dict[str, tuple[bytes, str]] = {}  # key → (data, served name)
        self.auth_seen = 0  # requests that carried an Authorization header (must stay 0)

    def sign(self, data: bytes, served_name: str) -> str:
        key = secrets.token_hex(8)
        self.objects[key] = (data, served_name)
        disposition = f'attachment; filename="{served_name}"'
        query = urlencode({"X-Amz-Signature": secrets.token_hex(16), "response-content-disposition": disposition})
        return f"{self.base}/file/civitai-models/{key}?{query}"

    def dispatch(self, h) -> None:
        if h.headers.get("Authorization"):
            self.auth_seen += 1
            return send(h, 403, b"<Error><Code>AccessDenied</Code><Message>Unexpected Authorization header"
                                b"</Message></Error>", "application/xml")
        parts = h.url_path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "file" or parts[2] not in self.objects:
            return send(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        if "X-Amz-Signature" not in h.query:
            return send(h, 403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "application/xml")
        data, name = self.objects[parts[2]]
        serve_bytes(h, data, etag=f'"{hashlib.md5(data).hexdigest()}"',
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


class FakeCivitai(FakeServer):
    """CivitAI's API and download endpoint; `storage` is the separate signed-URL host."""

    label = "civitai"

    def __init__(self, token: str = TOKEN):
        super().__init__()
        self.token = token
        self.storage = FakeStorage()
        self.models: dict[int, FakeModel] = {}
        self.versions: dict[int, FakeVersion] = {}
        self.api_failures: list[int] = []  # statuses the next /api/v1 requests get (CivitAI's API has bad moments)
        self.api_moved_to: Optional[str] = None  # base URL the API permanently redirects to (a moved host)
        self._add_lock = threading.Lock()

    def start(self):
        self.storage.start()
        return super().start()

    def stop(self):
        super().stop()
        self.storage.stop()

    # -- catalogue ------------------------------------------------------------------------------

    def add_version(self, *, model_id: int, version_id: int, model_name: str, model_type: str, files: list,
                    version_name: str = "v1", base_model: str = "SD 1.5", trained_words=(), **kw) -> FakeVersion:
        """Add a version (the newest of its model so far)."""
        if files and not any(f.primary for f in files):
            files[0].primary = True
        with self._add_lock:
            model = self.models.setdefault(model_id, FakeModel(model_id, model_name, model_type))
            version = FakeVersion(version_id, model_id, version_name, base_model, list(trained_words), files, **kw)
            model.versions.insert(0, version)
            self.versions[version_id] = version
        return version

    def add_empty_model(self, model_id: int, name: str, model_type: str = "Checkpoint") -> FakeModel:
        """A model page whose only version has no files (nothing to download)."""
        model = self.models.setdefault(model_id, FakeModel(model_id, name, model_type))
        version = FakeVersion(model_id * 10, model_id, "draft", "SD 1.5", [], [])
        model.versions.insert(0, version)
        self.versions[version.id] = version
        return model

    # -- requests -------------------------------------------------------------------------------

    def dispatch(self, h) -> None:
        parts = [p for p in h.url_path.split("/") if p]
        if parts[:2] == ["api", "v1"] and self.api_moved_to and not h.headers.get("X-Moved"):
            return send(h, 301, b"", "text/plain", {"Location": self.api_moved_to + h.path})
        if parts[:2] == ["api", "v1"] and self.api_failures:
            status = self.api_failures.pop(0)
            return send(h, status, b"<html><title>Bad gateway</title></html>", "text/html",
                        {"Retry-After": "0"} if status == 429 else None)
        if parts[:3] == ["api", "v1", "model-versions"] and len(parts) == 5 and parts[3] == "by-hash":
            return self._by_hash(h, parts[4])
        if parts[:3] == ["api", "v1", "model-versions"] and len(parts) == 4:
            version = self.versions.get(int(parts[3])) if parts[3].isdigit() else None
            if version is None:
                return send_json(h, 404, {"error": f"No model version with id {parts[3]}"})
            return send_json(h, 200, version.to_json(self.models[version.model_id]))
        if parts[:3] == ["api", "v1", "models"] and len(parts) == 4:
            model = self.models.get(int(parts[3])) if parts[3].isdigit() else None
            if model is None:
                return send_json(h, 404, {"error": f"No model with id {parts[3]}"})
            return send_json(h, 200, {"id": model.id, "name": model.name, "type": model.type, "nsfw": False,
                                      "tags": [], "modelVersions": [v.to_json(model) for v in model.versions]})
        if parts[:3] == ["api", "download", "models"] and len(parts) == 4:
            return self._download(h, parts[3])
        if parts and parts[0] == "login":
            return send(h, 200, b"<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head>"
                                b"<body>Sign in to download</body></html>", "text/html; charset=utf-8")
        send(h, 404, b"<!DOCTYPE html><html><title>404 | Civitai</title></html>", "text/html")

    def _by_hash(self, h, value: str) -> None:
        value = value.upper()
        for version in self.versions.values():
            for f in version.files:
                sha = f.sha256.upper()
                if value in (sha, sha[:10]):
                    return send_json(h, 200, version.to_json(self.models[version.model_id]))
        send_json(h, 404, {"error": "Model not found"})

    def _auth_state(self, h) -> str:
        header = h.headers.get("Authorization")
        if not header:
            return "missing"
        return "ok" if header == f"Bearer {self.token}" else "wrong"

    def _download(self, h, raw_id: str) -> None:
        version = self.versions.get(int(raw_id)) if raw_id.isdigit() else None
        if version is None or version.removed:
            return send_json(h, 404, {"error": "Model not found"})
        auth = self._auth_state(h)
        if version.early_access_until:
            return send_json(h, 403, {"error": "This model is in early access; purchase access to download.",
                                      "deadline": version.early_access_until})
        if auth == "wrong" or (version.auth and auth != "ok"):
            if version.auth == "json" or "application/json" in h.headers.get("Accept", ""):
                return send_json(h, 401, {"error": "Unauthorized",
                                          "message": "The user must be logged in to download this model"})
            return send(h, 307, b"", "text/plain",
                        {"Location": f"/login?returnUrl={quote(f'/models/{version.model_id}')}&reason=download-auth"})
        f = self._select(version, h.query)
        if f is None:
            return send_json(h, 404, {"error": "No file matches the request"})
        served = f.served_name or f.name
        data = f.data[:-1] + bytes([f.data[-1] ^ 0xFF]) if f.corrupt else f.data
        send(h, 307, b"", "text/plain", {"Location": self.storage.sign(data, served)})

    @staticmethod
    def _select(version: FakeVersion, query: dict) -> Optional[FakeFile]:
        if "fileId" in query:
            return next((f for f in version.files if str(f.id) == query["fileId"]), None)
        wanted = {k: query[k].lower() for k in ("type", "format", "size", "fp") if query.get(k)}
        if not wanted:
            return next((f for f in version.files if f.primary), None)
        for f in version.files:
            have = {"type": f.type, "format": f.format, "size": f.size or "", "fp": f.fp or ""}
            if all(have[k].lower() == v for k, v in wanted.items()):
                return f
        return None
