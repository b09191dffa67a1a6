"""Search and browse: `/api/v1/models` queries and what a result shows (cards, versions, files, access).

Parameter names and values are CivitAI's own (reference civitai-api.md §1, src/server/schema/model.schema.ts):
`query`, repeated `types` and `baseModels`, `sort`, `period`, `nsfw`, `limit`, `cursor`. A `query` search pages
by cursor only; a page may come back empty yet carry `nextCursor` (civitai #1848), so a few are followed.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ..errors import InputError
from ..units import human_size
from . import levels
from .client import Client

TYPES = ("Checkpoint", "LORA", "LoCon", "DoRA", "TextualInversion", "VAE", "Controlnet", "Upscaler", "Hypernetwork",
         "MotionModule", "Poses", "Wildcards", "Workflows", "Other")
# Words users type → CivitAI's ModelType values.
_TYPE_WORDS = {"checkpoint": ["Checkpoint"], "model": ["Checkpoint"], "lora": ["LORA"], "locon": ["LoCon"],
               "lycoris": ["LoCon"], "dora": ["DoRA"], "embedding": ["TextualInversion"],
               "textualinversion": ["TextualInversion"], "ti": ["TextualInversion"], "vae": ["VAE"],
               "controlnet": ["Controlnet"], "upscaler": ["Upscaler"], "hypernetwork": ["Hypernetwork"]}
SORTS = ("Highest Rated", "Most Downloaded", "Most Liked", "Most Discussed", "Most Collected", "Most Images",
         "Newest", "Oldest")
_SORT_WORDS = {"rating": "Highest Rated", "rated": "Highest Rated", "downloads": "Most Downloaded",
               "downloaded": "Most Downloaded", "liked": "Most Liked", "likes": "Most Liked", "new": "Newest",
               "newest": "Newest", "old": "Oldest", "oldest": "Oldest", "discussed": "Most Discussed",
               "collected": "Most Collected", "images": "Most Images"}
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
# Common base models (the full list is `/api/v1/enums` → BaseModel); any other value is passed as typed.
BASE_MODELS = ("SD 1.5", "SD 2.1", "SDXL 1.0", "Pony", "Illustrious", "NoobAI", "Flux.1 D", "Flux.1 S", "SD 3.5")
MORE_EMPTY_PAGES = 3  # empty pages with a cursor followed before giving up (civitai #1848)


def _pick(value: str, allowed: Sequence[str], words: Mapping[str, str], what: str) -> str:
    text = str(value).strip()
    low = text.lower().replace("_", " ").replace("-", " ")
    for name in allowed:
        if name.lower() == low or name.lower().replace(" ", "") == low.replace(" ", ""):
            return name
    if low.replace(" ", "") in words:
        return words[low.replace(" ", "")]
    raise InputError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")


def model_types(words: Sequence[str]) -> list[str]:
    """CivitAI `types` values from user words ("lora", "embedding", "Checkpoint"); InputError for an unknown one."""
    out: list[str] = []
    for word in words or []:
        key = str(word).strip().lower().replace(" ", "").replace("_", "")
        found = _TYPE_WORDS.get(key) or [t for t in TYPES if t.lower() == key]
        if not found:
            raise InputError(f"unknown model type {word!r}: use checkpoint, lora, locon, dora, embedding, vae, "
                             "controlnet, upscaler (or a CivitAI type name)")
        out += [t for t in found if t not in out]
    return out


@dataclass(frozen=True)
class SearchQuery:
    """One `/api/v1/models` request. `level` is the highest content level shown (PG by default)."""

    query: str = ""
    types: tuple = ()
    base_models: tuple = ()
    sort: str = "Highest Rated"
    period: str = "AllTime"
    level: int = levels.PG
    limit: int = 20
    cursor: Optional[str] = None
    username: Optional[str] = None
    tag: Optional[str] = None

    @classmethod
    def build(cls, query: str = "", *, types=(), base_models=(), sort=None, period=None, level="PG", limit=20,
              cursor=None, username=None, tag=None) -> "SearchQuery":
        """Validate user spellings into CivitAI's values; InputError names what is accepted."""
        if not str(limit).strip().isdigit() or not 1 <= int(limit) <= 100:
            raise InputError(f"limit must be a whole number between 1 and 100, not {limit!r}")
        types = [types] if isinstance(types, str) else list(types or [])
        bases = [base_models] if isinstance(base_models, str) else list(base_models or [])
        return cls(query=(query or "").strip(), types=tuple(model_types(types)),
                   base_models=tuple(str(b).strip() for b in bases if str(b).strip()),
                   sort=_pick(sort, SORTS, _SORT_WORDS, "sort") if sort else "Highest Rated",
                   period=_pick(period, PERIODS, {"all": "AllTime", "alltime": "AllTime"}, "period")
                   if period else "AllTime",
                   level=levels.parse_level(level), limit=int(limit), cursor=cursor, username=username, tag=tag)

    def params(self) -> list[tuple[str, Any]]:
        params: list[tuple[str, Any]] = [("limit", self.limit), ("query", self.query), ("sort", self.sort),
                                         ("period", self.period), ("nsfw", levels.api_nsfw_param(self.level)),
                                         ("username", self.username), ("tag", self.tag), ("cursor", self.cursor)]
        params += [("types", t) for t in self.types] + [("baseModels", b) for b in self.base_models]
        return params


@dataclass
class Card:
    """One search result as a grid card shows it; `raw` is the API item (versions, files, images)."""

    id: int
    name: str
    type: str
    base_models: list
    downloads: int
    thumbs_up: int
    rating: Optional[float]
    creator: str
    nsfw: bool
    image: Optional[dict]  # the first image allowed at the query's level, or None
    hidden_images: int  # images not shown at this level
    raw: dict = field(repr=False, default_factory=dict)

    @classmethod
    def from_item(cls, item: Mapping[str, Any], level: int) -> "Card":
        versions = list(item.get("modelVersions") or [])
        images = [img for v in versions for img in (v.get("images") or [])]
        stats = item.get("stats") or {}
        bases: list[str] = []
        for v in versions:
            if v.get("baseModel") and v["baseModel"] not in bases:
                bases.append(v["baseModel"])
        shown = levels.first_shown(images, level)
        return cls(id=int(item.get("id") or 0), name=str(item.get("name") or "?"), type=str(item.get("type") or "?"),
                   base_models=bases, downloads=int(stats.get("downloadCount") or 0),
                   thumbs_up=int(stats.get("thumbsUpCount") or 0),
                   rating=float(stats["rating"]) if stats.get("rating") else None,
                   creator=str((item.get("creator") or {}).get("username") or ""), nsfw=bool(item.get("nsfw")),
                   image=dict(shown) if shown else None,
                   hidden_images=sum(1 for img in images if not levels.shown(img, level)), raw=dict(item))

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.type, "base_models": self.base_models,
                "downloads": self.downloads, "thumbs_up": self.thumbs_up, "rating": self.rating,
                "creator": self.creator, "nsfw": self.nsfw,
                "thumbnail": levels.sized(self.image["url"]) if self.image else None,
                "versions": [{"id": v.get("id"), "name": v.get("name"), "base_model": v.get("baseModel")}
                             for v in self.raw.get("modelVersions") or []]}


@dataclass
class Page:
    cards: list
    next_cursor: Optional[str]
    base: str


def search(client: Client, query: SearchQuery, link: Optional[str] = None) -> Page:
    """One page of results; empty pages that still carry a cursor are followed a few times (civitai #1848).

    Above PG-13 civitai.red is asked first when no link says otherwise: it is the site that shows those levels, and
    in April 2026 civitai.com's API briefly hid them."""
    if link is None and query.level > levels.PG13:
        link = "https://civitai.red/"
    current = query
    for _ in range(MORE_EMPTY_PAGES + 1):
        data, base = client.models(current.params(), link=link)
        items = list((data or {}).get("items") or [])
        cursor = _next_cursor((data or {}).get("metadata") or {})
        if items or not cursor:
            return Page([Card.from_item(i, query.level) for i in items], cursor, base)
        current = SearchQuery(**{**current.__dict__, "cursor": cursor})
    return Page([], cursor, base)


def _next_cursor(metadata: Mapping[str, Any]) -> Optional[str]:
    if metadata.get("nextCursor") not in (None, ""):
        return str(metadata["nextCursor"])
    from urllib.parse import parse_qs, urlsplit

    page = metadata.get("nextPage")
    if page:
        return (parse_qs(urlsplit(str(page)).query).get("cursor") or [None])[0]
    return None


# ---------------------------------------------------------------------------------------------- a model's page


def file_label(f: Mapping[str, Any]) -> str:
    """`name · 218.3 MB · SafeTensor fp16 pruned · primary` (what a file picker shows)."""
    meta = f.get("metadata") or {}
    size = float(f.get("sizeKB") or 0) * 1024
    parts = [str(f.get("name") or "?"), human_size(size) if size else "size ?",
             " ".join(str(x) for x in (meta.get("format"), meta.get("fp"), meta.get("size")) if x)]
    if f.get("type") and f.get("type") not in ("Model",):
        parts.append(str(f["type"]))
    if f.get("primary"):
        parts.append("primary")
    return " · ".join(p for p in parts if p)


def _future(when: Any) -> Optional[str]:
    """`YYYY-MM-DD HH:MM UTC` when `when` is an ISO time still to come, else None."""
    if not when:
        return None
    try:
        moment = _dt.datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    if moment <= _dt.datetime.now(_dt.timezone.utc):
        return None
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def early_access(version: Mapping[str, Any]) -> Optional[str]:
    """"until <date>" / "permanently" when only paying supporters may download this version now, else None.

    Both shapes are read: `paidAccess {permanent, endsAt}` (since 2026-07-30) and the older `availability:
    "EarlyAccess"` + `earlyAccessEndsAt` still shown by the docs.
    """
    paid = version.get("paidAccess")
    if isinstance(paid, Mapping):
        if paid.get("permanent"):
            return "permanently (paid access)"
        until = _future(paid.get("endsAt"))
        if until:
            return f"until {until}"
    if str(version.get("availability") or "") == "EarlyAccess":
        until = _future(version.get("earlyAccessEndsAt") or version.get("earlyAccessDeadline"))
        return f"until {until}" if until else "for now"
    until = _future(version.get("earlyAccessDeadline"))
    return f"until {until}" if until else None


def access_notes(version: Mapping[str, Any], has_token: bool) -> list[str]:
    """What stands between the user and a download of this version, said before it starts."""
    notes = []
    label = f"{(version.get('model') or {}).get('name') or 'this model'} {version.get('name') or ''}".strip()
    ea = early_access(version)
    if ea:
        notes.append(f"{label} is in Early Access {ea}: only supporters can download it now; pick an earlier "
                     "version or wait")
    control = version.get("usageControl")
    if control and control != "Download":
        notes.append(f"{label}: its creator allows {control} only, not downloads")
    if not version.get("files"):
        notes.append(f"{label} has no downloadable file (archived or taken down)")
    if not has_token:
        notes.append("No CivitAI token set: files whose creator requires a login stop at once with a message "
                     "(nothing is saved); add the token in the Tokens panel")
    return notes


def can_download(version: Mapping[str, Any]) -> bool:
    control = version.get("usageControl")
    return bool(version.get("files")) and not early_access(version) and control in (None, "", "Download")
