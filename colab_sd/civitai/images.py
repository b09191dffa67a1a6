"""Where an image's generation data comes from: a CivitAI image page, an image URL, or a local file.

A page (`civitai.com/images/ID`, `civitai.red/images/ID`, the `$CIVITAI_ENDPOINT` host) is looked up with
`/api/v1/images?imageId=ID&withMeta=true&flatMeta=true&nsfw=X` (reference civitai-api.md §3: without a level a
mature image comes back as empty items; `meta` is null unless asked for). A file's own data is A1111's
"parameters": a PNG text chunk, or EXIF UserComment in a JPEG/WebP (how A1111 saves those).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from ..errors import InputError, NotFoundError
from ..tokens import redact_url
from .client import Client, fetch_image, is_civitai_host

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
_PAGE = re.compile(r"^/images/(\d+)(?:/|$)")
_CDN_ID = re.compile(r"/(\d{3,})\.(?:jpe?g|png|webp)$", re.IGNORECASE)


@dataclass
class Source:
    """What a recreate source turned out to be, and its generation data (the infotext dict, or None)."""

    kind: str  # "page", "url", "file"
    label: str  # shown to the user (a redacted URL or a path)
    params: Optional[dict]
    image_id: Optional[int] = None
    link: Optional[str] = None  # the CivitAI page or image URL (decides which host is asked first)
    image: Optional[dict] = None  # the API image item (url, nsfwLevel, baseModel, modelVersionIds)
    why: Optional[str] = None  # why there are no params


def page_id(text: str) -> Optional[int]:
    """The image id of a CivitAI image page link, or None when `text` is not one."""
    text = text.strip()
    if not text.lower().startswith(("http://", "https://")):
        if re.match(r"^(?:www\.)?civitai\.(?:com|red|green)/images/\d+", text, re.IGNORECASE):
            text = "https://" + text
        else:
            return None
    if not is_civitai_host(text) or (urlsplit(text).hostname or "").lower().startswith("image."):
        return None
    m = _PAGE.match(urlsplit(text).path)
    return int(m.group(1)) if m else None


def read_params(data) -> tuple[Optional[dict], Optional[str]]:
    """(the infotext dict, None) for an image's own settings, or (None, why) when it carries none."""
    from ..infotext import read_parameters

    try:
        return read_parameters(data), None
    except InputError as err:
        return None, str(err)


def load(source: str, client: Client) -> Source:
    """Read a recreate source: a CivitAI image page, an http(s) image URL, or a local image file."""
    text = str(source).strip()
    image_id = page_id(text)
    if image_id is not None:
        link = text if "://" in text else "https://" + text
        item, _ = client.image(image_id, link=link)
        return _from_item(item, redact_url(text), image_id, link)
    if text.lower().startswith(("http://", "https://")):
        return _from_url(text, client)
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"{text!r} is not a CivitAI image page, an image URL or an image file: give "
                         "civitai.com/images/ID, an https link to a PNG/JPEG/WebP, or a path")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"{path.name} is not a PNG, JPEG or WebP image")
    params, why = read_params(path)
    return Source("file", str(path), params, why=why)


def _from_item(item: dict, label: str, image_id: int, link: Optional[str]) -> Source:
    from ..infotext import from_civitai_meta

    meta = item.get("meta")
    if isinstance(meta, dict) and meta:
        return Source("page", label, from_civitai_meta(dict(meta)), image_id, link, item)
    return Source("page", label, None, image_id, link, item,
                  why=f"CivitAI has no generation data for image {image_id} (its poster shared none)")


def _from_url(url: str, client: Client) -> Source:
    """An image URL: its own metadata first; a CivitAI CDN image without any is looked up by the id in its name."""
    data, _ = fetch_image(url, require_image=False)  # no credentials, whatever the host
    params, why = read_params(data)
    if params:
        return Source("url", redact_url(url), params, link=url)
    m = _CDN_ID.search(urlsplit(url).path)
    if m and is_civitai_host(url):
        try:
            item, _ = client.image(int(m.group(1)))
        except NotFoundError:
            item = None
        if item is not None:
            return _from_item(item, redact_url(url), int(m.group(1)), None)
    return Source("url", redact_url(url), None, link=url, why=why)
