"""CivitAI: every URL form a user pastes → one metadata call → the RemoteFile to fetch.

Two id spaces never mix: a *model* id (the page, `/models/4384`) and a *model-version* id (the
download, `/api/download/models/128713`). The metadata gives the kind (folder), the file, its
SHA256, the base model and the trigger words; the download itself goes through the engine with
the token as a Bearer header that only the CivitAI host ever sees.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..civitai.client import Client
from ..civitai.local import fetch_with_preview
from ..civitai.client import endpoint_override as endpoint_override  # noqa: F401 (part of this module's face)
from ..civitai.client import is_civitai_host as is_civitai_host
from ..errors import InputError, NotFoundError
from ..library import kind_of
from ..remote import RemoteFile
from ..tokens import Token, TokenStore, remember_secret, redact_url
from .civitai_errors import _deadline, make_explain  # noqa: F401 (make_explain is part of this module's face)

log = logging.getLogger("colab_sd.sources.civitai")

NAME = "civitai"
DEFAULT_ENDPOINT = "https://civitai.com"
# The site and its mirrors; the host of $CIVITAI_ENDPOINT is added at call time.
HOSTS = ("civitai.com", "civitai.red", "civitai.green")

# files[].type values that decide the kind whatever the model type is.
_FILE_TYPE_KIND = {"vae": "vae", "negative": "embedding", "training data": "other", "archive": "other"}
# Query parameters of /api/download/models/{id} that pick one file of a version.
_DOWNLOAD_FILTERS = ("type", "format", "size", "fp")


@dataclass(frozen=True)
class CivitaiRef:
    """What a pasted CivitAI reference names; at least one of the ids is set."""

    model_id: Optional[int] = None
    version_id: Optional[int] = None
    file_id: Optional[int] = None
    filters: Mapping[str, str] = field(default_factory=dict)  # type / format / size / fp of /api/download
    base: Optional[str] = None  # scheme://host of the pasted URL (a mirror), None for urn / shorthand
    token: Optional[str] = field(default=None, repr=False)  # a `?token=` the user pasted (used, never shown)


_AIR = re.compile(r"^(?:urn:)?air:(?P<eco>[\w.-]+):(?P<type>[\w.-]+):civitai:(?P<model>\d+)(?:@(?P<version>\d+))?"
                  r"(?::[\w.-]+)?(?:\.[\w]+)?$", re.IGNORECASE)
_SHORT = re.compile(r"^civitai:(?:(?P<model>\d+)@)?(?P<version>\d+)$", re.IGNORECASE)


def matches(url: str) -> bool:
    """The dispatch test: an AIR urn, `civitai:ID`, or an http(s) URL on a CivitAI host."""
    text = url.strip()
    if _AIR.match(text) or _SHORT.match(text):
        return True
    return text.lower().startswith(("http://", "https://")) and is_civitai_host(text)


# ---------------------------------------------------------------------------------------------- parsing


MAX_ID = 2 ** 31 - 1  # CivitAI's ids are 1..2^31-1; others get a 400 (reference civitai-api.md §2)


def _int(value: str, what: str, url: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} in {redact_url(url)!r} is not a number: use a link copied from civitai.com") from None
    if not 1 <= number <= MAX_ID:
        raise InputError(f"{what} {number} in {redact_url(url)!r} cannot be a CivitAI id (1 to {MAX_ID}): use a "
                         "link copied from civitai.com")
    return number


def parse(url: str) -> CivitaiRef:
    """Parse any CivitAI URL form into a `CivitaiRef` (pure: no I/O)."""
    text = url.strip()
    m = _AIR.match(text)
    if m:
        return CivitaiRef(model_id=_int(m["model"], "the model id", url),
                          version_id=_int(m["version"], "the version id", url) if m["version"] else None)
    m = _SHORT.match(text)
    if m:
        return CivitaiRef(model_id=_int(m["model"], "the model id", url) if m["model"] else None,
                          version_id=_int(m["version"], "the version id", url))
    parts = urlsplit(text)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    base = f"{parts.scheme}://{netloc[4:] if netloc.lower().startswith('www.') else netloc}"
    query = dict(parse_qsl(parts.query, keep_blank_values=False))
    token = query.pop("token", None)
    if token:
        remember_secret(token)
    segments = [s for s in parts.path.split("/") if s]
    lowered = [s.lower() for s in segments]
    version = query.get("modelVersionId")
    file_id = query.get("fileId")
    common = dict(base=base, token=token, file_id=_int(file_id, "fileId", url) if file_id else None)
    # /api/download/models/{versionId}[?type=&format=&size=&fp=|?fileId=]
    if lowered[:3] == ["api", "download", "models"] and len(segments) >= 4:
        filters = {k: query[k] for k in _DOWNLOAD_FILTERS if query.get(k)}
        return CivitaiRef(version_id=_int(segments[3], "the version id", url), filters=filters, **common)
    # /api/v1/model-versions/{versionId} and /api/v1/models/{modelId}: API links pasted from docs or scripts
    if lowered[:3] == ["api", "v1", "model-versions"] and len(segments) >= 4 and segments[3].isdigit():
        return CivitaiRef(version_id=int(segments[3]), **common)
    if lowered[:3] == ["api", "v1", "models"] and len(segments) >= 4:
        return CivitaiRef(model_id=_int(segments[3], "the model id", url),
                          version_id=_int(version, "modelVersionId", url) if version else None, **common)
    # /models/{modelId}[/{slug}][?modelVersionId=]
    if lowered[:1] == ["models"] and len(segments) >= 2:
        return CivitaiRef(model_id=_int(segments[1], "the model id", url),
                          version_id=_int(version, "modelVersionId", url) if version else None, **common)
    # /model-versions/{versionId} (the site's own short links)
    if lowered[:1] == ["model-versions"] and len(segments) >= 2:
        return CivitaiRef(version_id=_int(segments[1], "the version id", url), **common)
    raise InputError(f"not a CivitAI model link: {redact_url(url)!r}; paste a model page "
                     "(civitai.com/models/ID) or a download link (civitai.com/api/download/models/ID)")


# ---------------------------------------------------------------------------------------------- metadata


def kind_for(model_type: Optional[str], file_type: Optional[str] = None) -> str:
    """The library folder for a CivitAI model type (and the chosen file's type)."""
    ftype = (file_type or "").strip().lower()
    if ftype in _FILE_TYPE_KIND:
        return _FILE_TYPE_KIND[ftype]
    return kind_of(model_type) or "other"  # CivitAI's model.type words are among the library's (LoCon, DoRA…)


def _is_model_file(f: Mapping[str, Any]) -> bool:
    return (f.get("type") or "Model") in ("Model", "Pruned Model")


def _is_safetensors(f: Mapping[str, Any]) -> bool:
    fmt = ((f.get("metadata") or {}).get("format") or "").lower()
    return fmt == "safetensor" or str(f.get("name", "")).lower().endswith(".safetensors")


def pick_file(version: Mapping[str, Any], file_id: Optional[int] = None,
              filters: Optional[Mapping[str, str]] = None) -> Mapping[str, Any]:
    """The file of a version to download: by id, by the download link's filters, else the primary
    model file, preferring SafeTensor over pickles. Raises NotFoundError when nothing fits."""
    files = list(version.get("files") or [])
    label = _version_label(version)
    if not files:
        raise NotFoundError(f"CivitAI {label} has no downloadable file; pick another version on its model page")
    if file_id is not None:
        for f in files:
            if f.get("id") == file_id:
                return f
        raise NotFoundError(f"CivitAI {label} has no file with id {file_id}; copy the link again from the model page")
    if filters:
        def fits(f):
            meta = f.get("metadata") or {}
            checks = {"type": f.get("type"), "format": meta.get("format"), "size": meta.get("size"), "fp": meta.get("fp")}
            return all(str(checks[k] or "").lower() == str(v).lower() for k, v in filters.items() if k in checks)

        chosen = [f for f in files if fits(f)]
        if not chosen:
            wanted = ", ".join(f"{k}={v}" for k, v in filters.items())
            raise NotFoundError(f"CivitAI {label} has no file with {wanted}; drop those options from the link "
                                "to get the primary file")
        files = chosen
        if len(files) == 1:
            return files[0]
    models = [f for f in files if _is_model_file(f)] or files
    primary = next((f for f in models if f.get("primary")), models[0])
    if _is_safetensors(primary):
        return primary
    # A pickle primary: take a SafeTensor file of the same type when the version has one.
    same = [f for f in models if _is_safetensors(f) and (f.get("type") or "Model") == (primary.get("type") or "Model")]
    return (same or [f for f in models if _is_safetensors(f)] or [primary])[0]


def newest_version(model: Mapping[str, Any]) -> Mapping[str, Any]:
    """The newest published version of a model that has files (the API lists newest first)."""
    versions = list(model.get("modelVersions") or [])
    name = model.get("name") or f"model {model.get('id')}"
    published = [v for v in versions if (v.get("status") or "Published") == "Published"]
    for version in published:
        if version.get("files"):
            return version
    raise NotFoundError(f"CivitAI model {name!r} has no downloadable file (no published version with files); "
                        "check its page or pick a version link")


def _version_label(version: Mapping[str, Any]) -> str:
    model = (version.get("model") or {}).get("name")
    name = version.get("name")
    vid = version.get("id")
    if model and name:
        return f"model {model!r} version {name!r} ({vid})"
    return f"version {vid}"


def scan_pending(f: Mapping[str, Any]) -> bool:
    """True when CivitAI has not finished scanning the file (it then has no hashes yet either)."""
    results = {str(f.get("pickleScanResult") or "Success"), str(f.get("virusScanResult") or "Success")}
    return bool(results - {"Success"})


def listed_sha256(f: Mapping[str, Any]) -> Optional[str]:
    """The SHA256 CivitAI lists for a file record (`hashes.SHA256`), lower-case hex, or None."""
    value = ((f.get("hashes") or {}).get("SHA256") or "").strip().lower()
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else None


def sidecar_meta(version: Mapping[str, Any], f: Mapping[str, Any], kind: str) -> dict:
    """What the library keeps about a CivitAI file (goes into its sidecar)."""
    model = version.get("model") or {}
    hashes = f.get("hashes") or {}
    return {
        "source_name": NAME,
        "kind": kind,
        "base_model": version.get("baseModel"),
        "trigger_words": [w.strip() for w in version.get("trainedWords") or [] if str(w).strip()],
        "civitai": {
            "model_id": version.get("modelId"), "version_id": version.get("id"), "file_id": f.get("id"),
            "model_name": model.get("name"), "version_name": version.get("name"), "type": model.get("type"),
            "file_type": f.get("type"), "nsfw": model.get("nsfw"),
            "autov2": hashes.get("AutoV2"), "scan": f.get("pickleScanResult"),
        },
        "size_estimate": int(float(f["sizeKB"]) * 1024) if f.get("sizeKB") else None,
        "api_file_name": f.get("name"),
    }


# ---------------------------------------------------------------------------------------------- download errors


# ---------------------------------------------------------------------------------------------- resolve


def api_base(ref: CivitaiRef) -> str:
    """Where the API is asked first: the override, else the pasted mirror, else civitai.com."""
    return endpoint_override() or ref.base or DEFAULT_ENDPOINT


def _download_url(base: str, version: Mapping[str, Any], f: Mapping[str, Any], ref: CivitaiRef) -> str:
    """The chosen file's download link on `base` (the host that answered the metadata), without any token.

    What the user gave is kept: their `fileId`, or their type/format/size/fp filters as written. A link that
    named no file gets the bare version link when the primary file was chosen (the server serves the primary),
    else the chosen file's own id. The link is never rebuilt into type/format/fp from the metadata: for a
    version with bf16, fp8, int8 and GGUF files CivitAI answers such a rebuilt link with 404 (issue 12).
    """
    if ref.file_id is not None:
        query = {"fileId": ref.file_id}
    elif ref.filters:
        query = dict(ref.filters)
    elif f.get("primary") or f.get("id") is None:
        query = {}
    else:
        query = {"fileId": f["id"]}
    return f"{base}/api/download/models/{version['id']}" + (f"?{urlencode(query)}" if query else "")


def _auth(ref: CivitaiRef, tokens: Optional[TokenStore]) -> Optional[Token]:
    token = tokens.get("civitai") if tokens else None
    if token is None and ref.token:
        from ..tokens import Secret

        token = Token(Secret(ref.token), "the token= in the pasted link")
    return token


def _client(ref: CivitaiRef, tokens: Optional[TokenStore]) -> Client:
    if (tokens is None or tokens.get("civitai") is None) and ref.token:
        # A `?token=` pasted in the link (and no other token): the client sends it as a header, never in a URL.
        return Client(TokenStore(civitai=ref.token, use_colab=False))
    return Client(tokens)


def fetch_version_from(ref: CivitaiRef, tokens: Optional[TokenStore] = None) -> tuple[Mapping[str, Any], str]:
    """The one metadata call (cached, every host): the version the reference names (a model page → its newest
    version) and the base URL of the host that answered."""
    client = _client(ref, tokens)
    link = ref.base + "/" if ref.base else None
    if ref.version_id is not None:
        return client.version(ref.version_id, link=link)
    model, base = client.model(ref.model_id, link=link)
    version = dict(newest_version(model))
    # A version inside /models/{id} lacks its parent's summary: add it so both paths give the same metadata.
    version.setdefault("modelId", model.get("id"))
    version.setdefault("model", {"name": model.get("name"), "type": model.get("type"), "nsfw": model.get("nsfw")})
    return version, base


def fetch_version(ref: CivitaiRef, tokens: Optional[TokenStore] = None) -> Mapping[str, Any]:
    """The version the reference names (see `fetch_version_from`)."""
    return fetch_version_from(ref, tokens)[0]


def resolve(url: str, tokens: Optional[TokenStore] = None, *, notes: Optional[list] = None) -> RemoteFile:
    """Resolve a CivitAI reference to the one RemoteFile to fetch (kind, file, sha256, metadata)."""
    ref = parse(url)
    version, base = fetch_version_from(ref, tokens)
    if ref.model_id is not None and version.get("modelId") not in (None, ref.model_id):
        raise InputError(f"CivitAI version {version.get('id')} belongs to model {version.get('modelId')}, "
                         f"not {ref.model_id}; copy the link again from the model page")
    f = pick_file(version, ref.file_id, ref.filters)
    model = version.get("model") or {}
    kind = kind_for(model.get("type"), f.get("type"))
    label = _version_label(version)
    sha = listed_sha256(f)
    if notes is not None:
        if scan_pending(f) or sha is None:
            notes.append(f"CivitAI has not finished scanning {f.get('name')!r} (pickle/virus scan pending): "
                         "downloading anyway, but no hash could be checked")
        if not _is_safetensors(f):
            notes.append(f"{f.get('name')!r} is a pickle (.ckpt/.pt) file: it can run code when loaded; "
                         "prefer a SafeTensor version when there is one")
    token = _auth(ref, tokens)
    early = version.get("earlyAccessEndsAt") if version.get("availability") == "EarlyAccess" else None
    return RemoteFile(
        url=_download_url(base, version, f, ref),
        filename=f.get("name"),
        sha256=sha,
        headers=token.header() if token else {},
        kind=kind,
        meta=sidecar_meta(version, f, kind),
        explain=make_explain(label, token, _deadline({"deadline": early}) if early else None),
        fetcher=fetch_with_preview(version),
    )


# ---------------------------------------------------------------------------------------------- identify


def identify(sha256: str, tokens: Optional[TokenStore] = None) -> Optional[dict]:
    """What CivitAI knows about a file with this sha256 (any hash kind works there), as sidecar fields;
    None when CivitAI does not know it. Used for files that came from elsewhere (Drive, a direct link,
    copied by hand) to learn their trigger words and base model."""
    value = (sha256 or "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{10,64}", value):
        raise InputError(f"{sha256!r} is not a file hash: give a sha256 (64 hex characters)")
    hit = Client(tokens).by_hash(value)  # asks every host before saying "unknown"
    if hit is None:
        return None
    version = hit[0]
    files = list(version.get("files") or [])
    f = next((g for g in files if listed_sha256(g) == value), None) or \
        next((g for g in files if str((g.get("hashes") or {}).get("AutoV2", "")).lower() == value[:10]), None) or \
        (files[0] if files else {})
    model = version.get("model") or {}
    return sidecar_meta(version, f, kind_for(model.get("type"), f.get("type")))
