"""Where an image's generation data comes from: a CivitAI image page, an image URL, or a local file.

A page (`civitai.com/images/ID`, `civitai.red/images/ID`, the `$CIVITAI_ENDPOINT` host) is looked up with
`/api/v1/images?imageId=ID&withMeta=true&flatMeta=true&nsfw=X` (reference civitai-api.md §3: without a level a
mature image comes back as empty items; `meta` is null unless asked for). A file's own data is A1111's
"parameters": a PNG text chunk, or EXIF UserComment in a JPEG/WebP (how A1111 saves those).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from ..errors import InputError
from ..tokens import redact_url
from .client import Client, fetch_image, is_civitai_host

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
_PAGE = re.compile(r"^/images/(\d+)(?:/|$)")
_CDN_ID = re.compile(r"/(\d{3,})\.(?:jpe?g|png|webp)$", re.IGNORECASE)


@dataclass
class Source:
    """What a recreate source turned out to be, and its generation data (`meta` shaped like the API's)."""

    kind: str  # "page", "url", "file"
    label: str  # shown to the user (a redacted URL or a path)
    meta: Optional[dict]
    image_id: Optional[int] = None
    link: Optional[str] = None  # the CivitAI page or image URL (decides which host is asked first)
    image: Optional[dict] = None  # the API image item (url, nsfwLevel, baseModel, modelVersionIds)


def page_id(text: str) -> Optional[int]:
    """The image id of a CivitAI image page link, or None when `text` is not one."""
    text = text.strip()
    if not text.lower().startswith(("http://", "https://")):
        if re.match(r"^(?:www\.)?civitai\.(?:com|red|green)/images/\d+", text, re.IGNORECASE):
            text = "https://" + text
        else:
            return None
    if not is_civitai_host(text) or urlsplit(text).hostname.lower().startswith("image."):
        return None
    m = _PAGE.match(urlsplit(text).path)
    return int(m.group(1)) if m else None


def read_file_parameters(path) -> Optional[str]:
    """A1111 "parameters" of a local PNG / JPEG / WebP, or None when the file carries none.

    Uses the shared infotext reader (`colab_sd.read_parameters`) when the package has it.
    """
    path = Path(path)
    try:
        import colab_sd

        reader = getattr(colab_sd, "read_parameters", None)
    except ImportError:  # pragma: no cover
        reader = None
    if reader is not None:
        found = reader(path)
        text = getattr(found, "text", found)
        if isinstance(text, str) or text is None:
            return text
    return parameters_from_bytes(path.read_bytes())


def parameters_from_bytes(data: bytes) -> Optional[str]:
    """A1111 "parameters" from image bytes: the PNG `parameters` text, else EXIF UserComment (JPEG / WebP)."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading an image's metadata needs Pillow: pip install pillow") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            text = img.info.get("parameters") or (getattr(img, "text", None) or {}).get("parameters")
            if text:
                return str(text)
            exif = img.getexif()
            comment = exif.get_ifd(0x8769).get(0x9286) or exif.get(0x9286)
    except Exception as err:  # PIL raises many kinds for a file that is not an image
        raise InputError(f"not an image colab_sd can read ({type(err).__name__}): give a PNG, JPEG or WebP") from None
    return _user_comment(comment)


def _user_comment(value: Any) -> Optional[str]:
    """EXIF UserComment: an 8-byte charset prefix, then the text (UTF-16 for "UNICODE", as piexif writes it)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip("\x00 ") or None
    raw = bytes(value)
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        texts = [body.decode(codec, "replace").strip("\x00 ") for codec in ("utf-16-be", "utf-16-le")]
        # The right byte order gives readable text; the wrong one gives CJK-looking noise without spaces.
        return max(texts, key=lambda t: t.count(" ") + t.count(",")) or None
    return body.decode("utf-8", "replace").strip("\x00 ") or None


def load(source: str, client: Client) -> Source:
    """Read a recreate source: a CivitAI image page, an http(s) image URL, or a local image file."""
    text = str(source).strip()
    image_id = page_id(text)
    if image_id is not None:
        item, base = client.image(image_id, link=text if "://" in text else "https://" + text)
        return Source("page", redact_url(text), _flat_meta(item.get("meta")), image_id, text, item)
    if text.lower().startswith(("http://", "https://")):
        return _from_url(text, client)
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"{text!r} is not a CivitAI image page, an image URL or an image file: give "
                         "civitai.com/images/ID, an https link to a PNG/JPEG/WebP, or a path")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"{path.name} is not a PNG, JPEG or WebP image")
    from .meta import infotext_to_meta

    params = read_file_parameters(path)
    return Source("file", str(path), infotext_to_meta(params) if params else None)


def _from_url(url: str, client: Client) -> Source:
    """An image URL: its own metadata first; a CivitAI CDN image without any is looked up by the id in its name."""
    from .meta import infotext_to_meta

    data, _ = fetch_image(url)  # no credentials, whatever the host
    params = parameters_from_bytes(data)
    if params:
        return Source("url", redact_url(url), infotext_to_meta(params), link=url)
    m = _CDN_ID.search(urlsplit(url).path)
    if m and is_civitai_host(url):
        image_id = int(m.group(1))
        try:
            item, _ = client.image(image_id)
        except Exception:  # NotFoundError and the like: the file simply had no data
            item = None
        if item is not None:
            return Source("page", redact_url(url), _flat_meta(item.get("meta")), image_id, None, item)
    return Source("url", redact_url(url), None, link=url)


def _flat_meta(meta: Any) -> Optional[dict]:
    if not isinstance(meta, dict):
        return None
    if isinstance(meta.get("meta"), dict) and "prompt" not in meta:
        return dict(meta["meta"])
    return dict(meta)
