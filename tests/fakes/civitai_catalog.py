"""The browse side of the fake CivitAI: images with content levels and generation `meta`, the image CDN, and the
answers of `/api/v1/models` (search, cursor paging) and `/api/v1/images` (imageId, withMeta, flatMeta, levels),
shaped like the reference (civitai-api.md §1, §3–5).

The CDN serves real JPEGs: a registered original (e.g. one whose A1111 parameters sit in EXIF), or a generated
picture at the width the URL's `width=N` segment asks for. It records every request; a request that carries an
Authorization header is counted in `auth_seen` and refused (thumbnails must be fetched without the token).
"""
from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from servers import FakeServer, send

LEGACY = {1: "None", 2: "Soft", 4: "Mature", 8: "X", 16: "X", 32: "Blocked"}
_NSFW_MASK = {"true": 60, "false": 1, "none": 1, "soft": 3, "mature": 7, "x": 31}  # /images' `nsfw` values


def jpeg(width: int, height: int, seed: int, parameters: Optional[str] = None) -> bytes:
    """A real JPEG (a colour per seed, the seed written on it); `parameters` go into EXIF UserComment the way
    A1111 writes them (b"UNICODE\\0" + UTF-16BE)."""
    from PIL import Image, ImageDraw

    colour = ((seed * 67) % 200 + 30, (seed * 131) % 200 + 30, (seed * 29) % 200 + 30)
    img = Image.new("RGB", (width, height), colour)
    ImageDraw.Draw(img).text((8, 8), f"#{seed}", fill=(255, 255, 255))
    buf = io.BytesIO()
    if parameters is None:
        img.save(buf, format="JPEG", quality=80)
    else:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + parameters.encode("utf-16-be")
        img.save(buf, format="JPEG", quality=80, exif=exif.tobytes())
    return buf.getvalue()


@dataclass
class FakeImage:
    """One image: its level bit (PG=1 … XXX=16), its generation `meta` (None: the post has none)."""

    id: int
    level: int = 1
    meta: Optional[dict] = None
    width: int = 512
    height: int = 768
    original: Optional[bytes] = None  # served for `original=true` (else a generated JPEG)
    username: str = "someone"
    base_model: str = "SD 1.5"
    version_ids: list = field(default_factory=list)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def url(self, cdn: str, name: Optional[str] = None) -> str:
        return f"{cdn}/acct/{self.uuid}/original=true/{name or self.id}.jpeg"

    def in_version(self, cdn: str) -> dict:
        """The shape inside model and model-version answers: numeric `nsfwLevel`, `meta` included."""
        return {"id": self.id, "url": self.url(cdn), "nsfwLevel": self.level, "width": self.width,
                "height": self.height, "hash": "U8Fz00", "type": "image", "meta": self.meta}

    def in_images(self, cdn: str, with_meta: bool, flat: bool) -> dict:
        """The `/api/v1/images` shape: legacy string `nsfwLevel`, numeric `browsingLevel`, `meta` only on request."""
        meta = None
        if with_meta and self.meta is not None:
            meta = dict(self.meta) if flat else {"id": self.id, "meta": dict(self.meta)}
        return {"id": self.id, "url": self.url(cdn, self.uuid), "hash": "U8Fz00", "width": self.width,
                "height": self.height, "nsfwLevel": LEGACY.get(self.level, "Blocked"), "browsingLevel": self.level,
                "nsfw": self.level > 2, "type": "image", "createdAt": "2026-09-01T10:00:00.000Z", "postId": self.id,
                "stats": {"likeCount": 3, "heartCount": 1, "commentCount": 0}, "meta": meta,
                "username": self.username, "baseModel": self.base_model, "modelVersionIds": list(self.version_ids)}


class FakeCDN(FakeServer):
    """image.civitai.com: `/<account>/<uuid>/<params>/<name>.<ext>`."""

    label = "cdn"

    def __init__(self):
        super().__init__()
        self.images: dict[str, FakeImage] = {}
        self.auth_seen = 0

    def dispatch(self, h) -> None:
        if h.headers.get("Authorization") or "token=" in h.path:
            self.auth_seen += 1
            return send(h, 403, b"credentials are not accepted here", "text/plain")
        parts = [p for p in h.url_path.split("/") if p]
        image = self.images.get(parts[1]) if len(parts) == 4 else None
        if image is None:
            return send(h, 404, b"<Error>NoSuchKey</Error>", "application/xml")
        params = dict(p.split("=", 1) for p in parts[2].split(",") if "=" in p)
        if params.get("original") == "true" and image.original is not None:
            return send(h, 200, image.original, "image/jpeg")
        width = int(params.get("width") or image.width)
        height = max(8, image.height * width // max(1, image.width))
        send(h, 200, jpeg(width, height, image.id), "image/jpeg")


def multi_query(h) -> dict:
    """Every value of every query parameter (`types=LORA&types=LoCon`)."""
    return parse_qs(urlsplit(h.path).query)


def level_mask(query: dict) -> int:
    """`/images`' level mask: `browsingLevel` wins over `nsfw`; none at all is PG only."""
    if query.get("browsingLevel"):
        return int(query["browsingLevel"][0])
    value = (query.get("nsfw") or ["false"])[0].lower()
    return _NSFW_MASK.get(value, 1)


def page(items: list, query: dict, default_limit: int = 100) -> tuple[list, Optional[str]]:
    """Cursor paging by offset (what a `query` search uses): (this page, next cursor or None)."""
    limit = int((query.get("limit") or [default_limit])[0])
    raw = (query.get("cursor") or ["0"])[0]
    start = 0 if raw.startswith("e") else int(raw)  # "e…": the cursor of an empty page (see FakeCivitai)
    chunk = items[start:start + limit]
    return chunk, (str(start + limit) if start + limit < len(items) else None)


def query_matches(name: str, text: str) -> bool:
    words = re.findall(r"\w+", text.lower())
    return all(w in name.lower() for w in words)
