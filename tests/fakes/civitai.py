"""A fake CivitAI: the v1 API (JSON shaped like the reference), the download endpoint with its
Bearer check, login redirect / 401 JSON / early-access 403 / 404, and a separate storage host
that serves the signed URLs and rejects any Authorization header (as real B2/R2 URLs must be
fetched without the CivitAI token). Search (`/api/v1/models`), images (`/api/v1/images`) and the
image CDN are in `civitai_catalog.py`; `hides_mature=True` plays civitai.com's API of mid-April 2026,
which answered as if mature models and images did not exist.

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

from servers import FakeServer, send, send_json, serve_bytes

from .civitai_catalog import FakeCDN, FakeImage, level_mask, multi_query, page, query_matches

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
    images: list = field(default_factory=list)  # FakeImage; a version without any gets one PG image
    usage_control: Optional[str] = None  # "Generation": the creator allows no downloads
    filters_404: bool = False  # the download endpoint answers 404 to ?type=&format=&fp= (multi-file versions)

    @property
    def nsfw_level(self) -> int:
        level = 0
        for image in self.images:
            level |= image.level
        return level or 1

    def to_json(self, model: "FakeModel", cdn: str = "") -> dict:
        data = {"id": self.id, "modelId": self.model_id, "name": self.name, "baseModel": self.base_model,
                "status": self.status, "nsfwLevel": self.nsfw_level, "createdAt": "2026-09-01T10:00:00.000Z",
                "availability": "EarlyAccess" if self.early_access_until else "Public",
                "trainedWords": list(self.trained_words),
                "model": {"name": model.name, "type": model.type, "nsfw": model.nsfw},
                "stats": {"downloadCount": model.downloads, "thumbsUpCount": model.thumbs_up},
                "downloadUrl": f"https://civitai.com/api/download/models/{self.id}",
                "paidAccess": {"permanent": False, "endsAt": self.early_access_until}
                if self.early_access_until else None,
                "files": [f.to_json(self.id) for f in self.files],
                "images": [image.in_version(cdn) for image in self.images]}
        if self.usage_control:
            data["usageControl"] = self.usage_control
        if self.early_access_until:
            data["earlyAccessEndsAt"] = self.early_access_until
        return data


@dataclass
class FakeModel:
    id: int
    name: str
    type: str
    versions: list = field(default_factory=list)  # newest first, as the API lists them
    nsfw: bool = False
    downloads: int = 100
    thumbs_up: int = 10
    creator: str = "someone"
    tags: list = field(default_factory=list)

    @property
    def nsfw_level(self) -> int:
        level = 0
        for version in self.versions:
            level |= version.nsfw_level
        return level or 1

    def to_json(self, cdn: str, base_models=()) -> dict:
        versions = [v for v in self.versions if not base_models or v.base_model in base_models]
        return {"id": self.id, "name": self.name, "description": f"<p>{self.name}</p>", "type": self.type,
                "nsfw": self.nsfw, "nsfwLevel": self.nsfw_level, "poi": False, "minor": False,
                "creator": {"username": self.creator, "image": None}, "tags": list(self.tags),
                "stats": {"downloadCount": self.downloads, "thumbsUpCount": self.thumbs_up, "rating": 0},
                "modelVersions": [v.to_json(self, cdn) for v in versions]}


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

    def __init__(self, token: str = TOKEN, *, hides_mature: bool = False, cdn: Optional[FakeCDN] = None):
        super().__init__()
        self.token = token
        self.hides_mature = hides_mature
        self.storage = FakeStorage()
        self.cdn = cdn or FakeCDN()  # two fakes (.com and .red) may share one CDN, like the real hosts
        self._own_cdn = cdn is None
        self.images: dict[int, FakeImage] = {}
        self.empty_pages = 0  # search pages answered empty (with a cursor) before the real one (civitai #1848)
        self.models: dict[int, FakeModel] = {}
        self.versions: dict[int, FakeVersion] = {}
        self.api_failures: list[int] = []  # statuses the next /api/v1 requests get (CivitAI's API has bad moments)
        self.api_moved_to: Optional[str] = None  # base URL the API permanently redirects to (a moved host)
        self._add_lock = threading.Lock()

    def start(self):
        # A new fake may get the port of an earlier one: colab_sd's answer cache must not answer for it.
        from colab_sd.civitai.client import clear_cache

        clear_cache()
        self.storage.start()
        if self._own_cdn:
            self.cdn.start()
        return super().start()

    def stop(self):
        super().stop()
        self.storage.stop()
        if self._own_cdn:
            self.cdn.stop()

    # -- catalogue ------------------------------------------------------------------------------

    def add_version(self, *, model_id: int, version_id: int, model_name: str, model_type: str, files: list,
                    version_name: str = "v1", base_model: str = "SD 1.5", trained_words=(), **kw) -> FakeVersion:
        """Add a version (the newest of its model so far)."""
        if files and not any(f.primary for f in files):
            files[0].primary = True
        model_kw = {k: kw.pop(k) for k in ("nsfw", "downloads", "thumbs_up", "creator", "tags") if k in kw}
        with self._add_lock:
            model = self.models.setdefault(model_id, FakeModel(model_id, model_name, model_type, **model_kw))
            version = FakeVersion(version_id, model_id, version_name, base_model, list(trained_words), files, **kw)
            if not version.images:
                version.images = [FakeImage(version_id * 10 + 1, base_model=base_model)]
            for image in version.images:
                self.add_image(image, version_id)
            model.versions.insert(0, version)
            self.versions[version_id] = version
        return version

    def add_image(self, image: FakeImage, version_id: Optional[int] = None) -> FakeImage:
        """An image on the site (a version's preview or any post); served by the CDN too."""
        if version_id is not None and version_id not in image.version_ids:
            image.version_ids.append(version_id)
        self.images[image.id] = image
        self.cdn.images[image.uuid] = image
        return image

    def _hidden(self, level: int) -> bool:
        """civitai.com's API in April 2026 answered like the SFW site: nothing without a PG or PG-13 image."""
        return self.hides_mature and not level & 3

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
            status, headers = status if isinstance(status, tuple) else (status, {"Retry-After": "0"} if status == 429 else None)
            return send(h, status, b"<html><title>Bad gateway</title></html>", "text/html", headers)
        if parts[:3] == ["api", "v1", "model-versions"] and len(parts) == 5 and parts[3] == "by-hash":
            return self._by_hash(h, parts[4])
        if parts[:3] == ["api", "v1", "model-versions"] and len(parts) == 4:
            version = self.versions.get(int(parts[3])) if parts[3].isdigit() else None
            if version is None or self._hidden(version.nsfw_level):
                return send_json(h, 404, {"error": f"No model version with id {parts[3]}"})
            return send_json(h, 200, version.to_json(self.models[version.model_id], self.cdn.base))
        if parts[:3] == ["api", "v1", "models"] and len(parts) == 4:
            model = self.models.get(int(parts[3])) if parts[3].isdigit() else None
            if model is None or self._hidden(model.nsfw_level):
                return send_json(h, 404, {"error": f"No model with id {parts[3]}"})
            return send_json(h, 200, model.to_json(self.cdn.base))
        if parts == ["api", "v1", "models"]:
            return self._search(h)
        if parts == ["api", "v1", "images"]:
            return self._images(h)
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
                if value in (sha, sha[:10]) and not self._hidden(version.nsfw_level):
                    return send_json(h, 200, version.to_json(self.models[version.model_id], self.cdn.base))
        send_json(h, 404, {"error": "Model not found"})

    def _search(self, h) -> None:
        q = multi_query(h)
        if q.get("page") and q.get("query"):
            return send_json(h, 400, {"error": "Cannot use page param with query search. Use cursor-based pagination."})
        cursor = (q.get("cursor") or ["0"])[0]
        if not (cursor.isdigit() or cursor.startswith("e")):  # the API validates its query (a zod schema): 400
            return send_json(h, 400, {"error": [{"code": "invalid_type", "path": ["cursor"],
                                                 "message": "Expected number, received string"}]})
        mask = 31 if (q.get("nsfw") or ["false"])[0] == "true" else 1
        types, bases = set(q.get("types") or []), set(q.get("baseModels") or [])
        found = [m for m in self.models.values()
                 if m.nsfw_level & mask and not self._hidden(m.nsfw_level)
                 and (not types or m.type in types) and query_matches(m.name, (q.get("query") or [""])[0])
                 and (not bases or any(v.base_model in bases for v in m.versions))]
        sort = (q.get("sort") or ["Highest Rated"])[0]
        key = {"Most Downloaded": lambda m: -m.downloads, "Newest": lambda m: -m.id, "Oldest": lambda m: m.id}.get(
            sort, lambda m: -m.thumbs_up)
        found.sort(key=key)
        if self.empty_pages and (q.get("cursor") or ["e"])[0].startswith("e"):
            self.empty_pages -= 1
            return send_json(h, 200, {"items": [], "metadata": {"nextCursor": f"e{self.empty_pages}"}})
        chunk, cursor = page(found, q, default_limit=100)
        metadata = {"nextCursor": cursor, "nextPage": f"https://civitai.com/api/v1/models?cursor={cursor}"} \
            if cursor else {}
        send_json(h, 200, {"items": [m.to_json(self.cdn.base, tuple(bases)) for m in chunk], "metadata": metadata})

    def _images(self, h) -> None:
        q = multi_query(h)
        mask = level_mask(q)
        with_meta = (q.get("withMeta") or ["false"])[0] == "true"
        flat = (q.get("flatMeta") or ["false"])[0] == "true"
        if q.get("imageId"):
            image = self.images.get(int(q["imageId"][0]))
            items = [image] if image is not None and image.level & mask and not self._hidden(image.level) else []
            return send_json(h, 200, {"items": [i.in_images(self.cdn.base, with_meta, flat) for i in items],
                                      "metadata": {}})
        wanted = int((q.get("modelVersionId") or ["0"])[0])
        items = [i for i in self.images.values() if i.level & mask and not self._hidden(i.level)
                 and (not wanted or wanted in i.version_ids)]
        chunk, cursor = page(items, q, default_limit=100)
        send_json(h, 200, {"items": [i.in_images(self.cdn.base, with_meta, flat) for i in chunk],
                           "metadata": {"nextCursor": cursor} if cursor else {}})

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
        if version.filters_404 and any(h.query.get(k) for k in ("type", "format", "size", "fp")):
            return send_json(h, 404, {"error": "Model not found"})  # what CivitAI answered in issue 12
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
