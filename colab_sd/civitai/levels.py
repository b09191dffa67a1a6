"""CivitAI content levels (PG … XXX) decided per image, and small CDN sizes for thumbnails.

Facts (reference civitai-api.md §4–5, from civitai/civitai src/server/common/enums.ts and
src/client-utils/edge-url.ts): levels are bits PG=1, PG13=2, R=4, X=8, XXX=16, Blocked=32; an image has one
level, a model or version the OR of its images' levels. `/images` items carry the legacy string
(`None|Soft|Mature|X|Blocked`) in `nsfwLevel` and the number in `browsingLevel`; model-version images carry the
number in `nsfwLevel`. An image whose level cannot be read counts as Blocked: safe by default.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError

PG, PG13, R, X, XXX, BLOCKED = 1, 2, 4, 8, 16, 32
# What a user types → the highest level shown. "safe" is the default everywhere.
LEVELS = {"pg": PG, "safe": PG, "none": PG, "sfw": PG, "pg13": PG13, "pg-13": PG13, "soft": PG13, "r": R,
          "mature": R, "x": X, "xxx": XXX, "all": XXX}
LEVEL_NAMES = {PG: "PG", PG13: "PG-13", R: "R", X: "X", XXX: "XXX", BLOCKED: "Blocked"}
CHOICES = ("PG", "PG13", "R", "X", "XXX")
_LEGACY = {"none": PG, "soft": PG13, "mature": R, "x": X, "blocked": BLOCKED}

# Widths the CDN serves without resizing on the fly (edge-url.ts snaps requests up to these).
CDN_WIDTHS = (96, 320, 450, 512, 800, 1200, 1600, 2200)
THUMB_WIDTH = 320  # a search card
PREVIEW_WIDTH = 450  # a model page preview, and the preview kept next to a downloaded model


def parse_level(value: Any) -> int:
    """The highest level to show from "PG", "PG13", "R", "X", "XXX" (or its bit value); InputError otherwise."""
    if isinstance(value, int) and value in LEVEL_NAMES and value != BLOCKED:
        return value
    key = str(value or "pg").strip().lower().replace("_", "")
    if key not in LEVELS:
        raise InputError(f"unknown content level {value!r}: use one of {', '.join(CHOICES)} (PG is the default)")
    return LEVELS[key]


def mask(max_level: int) -> int:
    """Every level bit up to and including `max_level` (R → PG|PG13|R = 7)."""
    return (max_level << 1) - 1


def image_level(image: Mapping[str, Any]) -> int:
    """One image's level bit, whichever shape the API used; Blocked when it cannot be read."""
    for key in ("nsfwLevel", "browsingLevel"):
        value = image.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, str) and value.strip().lower() in _LEGACY:
            return _LEGACY[value.strip().lower()]
    return BLOCKED


def shown(image: Mapping[str, Any], max_level: int) -> bool:
    """True when `image` may be shown at `max_level`: its level (one bit, or a composite) lies within the mask."""
    level = image_level(image)
    return level & ~mask(max_level) == 0


def first_shown(images, max_level: int) -> Optional[Mapping[str, Any]]:
    """The first image that may be shown (only still images: a video cannot be a thumbnail here)."""
    for image in images or []:
        if (image.get("type") or "image") == "image" and image.get("url") and shown(image, max_level):
            return image
    return None


def api_nsfw_param(max_level: int) -> Optional[str]:
    """`/models`' `nsfw` parameter: absent means PG only (mask 1), `true` every level (filtered here per image)."""
    return "true" if max_level > PG else None


_PARAMS = re.compile(r"^[a-z]+=[^/]*$", re.IGNORECASE)


def sized(url: str, width: int = THUMB_WIDTH) -> str:
    """The CDN URL of the same image at a small width: `/…/original=true/x.jpeg` → `/…/width=320,optimized=true/x.jpeg`.

    The width snaps up to a size the CDN keeps; ≤450 px asks for the optimized (webp) form, as the site does.
    URLs that are not CDN image URLs come back unchanged.
    """
    width = next((w for w in CDN_WIDTHS if w >= width), CDN_WIDTHS[-1])
    parts = urlsplit(url)
    segments = parts.path.split("/")
    params = f"width={width},optimized=true" if width <= 450 else f"width={width}"
    for i in range(len(segments) - 2, 0, -1):  # the params segment sits just before the file name
        if _PARAMS.match(segments[i]) or "," in segments[i] and "=" in segments[i]:
            segments[i] = params
            return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), parts.query, ""))
    if len(segments) == 4 and segments[-1]:  # /<account>/<uuid>/<name>: the params segment was left out
        segments.insert(3, params)
        return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), parts.query, ""))
    return url
