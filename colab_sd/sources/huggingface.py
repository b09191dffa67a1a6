"""Hugging Face Hub: file links, `owner/repo/path` shorthands and whole diffusers repos.

huggingface_hub answers the questions (which files a repo has, their sizes and LFS sha256, the
commit; its errors become one-line messages); the byte mover moves every byte: the Hub's resolve
URL redirects to its CDN (LFS and Xet-backed files alike), which the segmented engine fetches,
resumes and verifies into `<name>.part` like any other link. Every path a listing gives is checked
here (no absolute path, no `..`), whatever the client version. Only API shared by huggingface_hub
0.2x, 1.x and 2.x is used; the endpoint is read from `$HF_ENDPOINT` at call time (the library
itself reads it once, at import).
"""
from __future__ import annotations

import logging
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote, unquote, urlsplit

from ..errors import AuthError, DownloadError, InputError, NotFoundError
from ..library import MODEL_EXTENSIONS
from ..remote import RemoteFile
from ..tokens import Token, TokenStore, redact, redact_url
from .hosts import env_endpoint, on_hosts

log = logging.getLogger("colab_sd.sources.huggingface")

NAME = "huggingface"
DEFAULT_ENDPOINT = "https://huggingface.co"
HOSTS = ("huggingface.co", "hf.co", "hf-mirror.com")

_REPO_PART = r"[A-Za-z0-9][\w.-]*"
_SHORTHAND = re.compile(rf"^(?:hf://)?(?P<repo>{_REPO_PART}/{_REPO_PART})(?:@(?P<rev>[\w./-]+?))?(?:/(?P<path>.+))?$")
WEIGHT_EXTENSIONS = tuple(e for e in MODEL_EXTENSIONS if e != ".onnx")  # ONNX exports are never what is wanted
# File names that say nothing about the model: saved under the repo's name instead.
_GENERIC = re.compile(r"^(?:diffusion_pytorch_model|pytorch_model|model|pytorch_lora_weights|adapter_model)"
                      r"(?:\.fp16|\.fp32|\.bf16)?\.(?:safetensors|bin)$", re.IGNORECASE)


@dataclass(frozen=True)
class HfRef:
    """A repo (and optionally one file in it) at a revision."""

    repo_id: str
    path: Optional[str] = None  # None: the whole repo
    revision: Optional[str] = None  # None: the default branch
    repo_type: str = "model"
    endpoint: Optional[str] = None  # from a pasted mirror / $HF_ENDPOINT host

    @property
    def name(self) -> str:
        return self.repo_id.split("/")[-1]


# ---------------------------------------------------------------------------------------------- endpoint and parsing


def endpoint_override() -> Optional[str]:
    return env_endpoint("HF_ENDPOINT")


def is_hf_url(url: str) -> bool:
    return on_hosts(url, HOSTS, "HF_ENDPOINT", subdomains=False)


def _looks_like_shorthand(text: str) -> bool:
    if "://" in text and not text.startswith("hf://"):
        return False
    if text.startswith("hf://"):
        return True
    m = _SHORTHAND.match(text)
    if not m:
        return False
    # owner/repo, or owner/repo/…/file.ext: a local-looking "a/b" with a dot-less last part is a repo.
    return m["path"] is None or m["path"].lower().endswith(WEIGHT_EXTENSIONS + (".json", ".yaml", ".txt"))


def matches(url: str) -> bool:
    text = url.strip()
    if text.lower().startswith(("http://", "https://")):
        return is_hf_url(text)
    return _looks_like_shorthand(text)


def parse(url: str) -> HfRef:
    """Any Hugging Face link or shorthand → HfRef (pure: no I/O)."""
    text = url.strip()
    if not text.lower().startswith(("http://", "https://")):
        m = _SHORTHAND.match(text)
        if not m:
            raise InputError(f"not a Hugging Face reference: {text!r}; use owner/repo or owner/repo/file.safetensors")
        return HfRef(m["repo"], m["path"], m["rev"])
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    pasted = None if host in ("huggingface.co", "www.huggingface.co", "hf.co", "www.hf.co") else \
        f"{parts.scheme}://{parts.netloc}"
    segments = [unquote(s) for s in parts.path.split("/") if s]
    repo_type = "model"
    if segments and segments[0] in ("datasets", "spaces"):
        repo_type = segments[0][:-1]
        segments = segments[1:]
    if len(segments) < 2:
        raise InputError(f"not a Hugging Face repo link: {redact_url(text)!r}; paste huggingface.co/OWNER/REPO/…")
    repo_id = "/".join(segments[:2])
    rest = segments[2:]
    if not rest:
        return HfRef(repo_id, None, None, repo_type, pasted)
    if rest[0] in ("blob", "resolve", "raw") and len(rest) >= 3:
        # The revision is one path segment (refs/pr/1 comes percent-encoded); the rest is the file.
        return HfRef(repo_id, "/".join(rest[2:]), rest[1], repo_type, pasted)
    if rest[0] == "tree" and len(rest) >= 2:
        return HfRef(repo_id, None, rest[1], repo_type, pasted)
    raise InputError(f"cannot tell which file {redact_url(text)!r} means: open the file on the Hub and copy "
                     "its link (…/blob/main/file.safetensors) or paste the repo (owner/repo)")


def endpoint_for(ref: HfRef) -> str:
    return endpoint_override() or ref.endpoint or DEFAULT_ENDPOINT


def page_url(ref: HfRef) -> str:
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[ref.repo_type]
    return f"{endpoint_for(ref)}/{prefix}{ref.repo_id}"


def local_name(ref: HfRef, path: str) -> str:
    """The file name in the library: the Hub's, or `<repo>.<ext>` when the Hub's says nothing."""
    base = posixpath.basename(path)
    if _GENERIC.match(base):
        return f"{ref.name}{os.path.splitext(base)[1]}"
    return base


# ---------------------------------------------------------------------------------------------- picking a diffusers repo


_VARIANT = re.compile(r"\.(fp16|fp32|bf16|non_ema|ema_only)(?=[.-])")


def _variant(name: str) -> Optional[str]:
    """The diffusers weight variant in a file name: x.fp16.safetensors, x.fp16-00001-of-00002.safetensors,
    x.safetensors.index.fp16.json."""
    m = _VARIANT.search(name)
    return m.group(1) if m else None


def pipeline_files(files: list[str]) -> list[str]:
    """The files a diffusers pipeline needs from a repo listing: model_index.json, each component's
    configs / tokenizer files and ONE set of weights per component: safetensors over .bin, and the
    fp16 variant over full precision (half the download, and what a Colab GPU runs anyway); no root
    single-file checkpoints, no flax, onnx, images or docs."""
    keep: list[str] = ["model_index.json"]
    by_dir: dict[str, list[str]] = {}
    for f in files:
        if "/" not in f:
            continue  # root files other than model_index.json: README, single-file checkpoints, images
        folder, base = f.rsplit("/", 1)
        by_dir.setdefault(folder, []).append(base)
    for folder, names in sorted(by_dir.items()):
        if folder.count("/") > 0:
            continue  # nested deeper than a component: not part of a pipeline layout
        weights = [n for n in names if n.endswith((".safetensors", ".bin"))]
        for n in names:
            # .jinja: the chat template transformers ≥ 4.50 saves beside a tokenizer (Z-Image's Qwen reads it)
            if n.endswith((".json", ".txt", ".model", ".jinja")) and ".index." not in n:
                keep.append(f"{folder}/{n}")
        chosen = None
        for ext in (".safetensors", ".bin"):
            for variant in ("fp16", None, "bf16", "fp32"):
                group = [n for n in weights if n.endswith(ext) and _variant(n) == variant]
                if group:
                    chosen = (ext, variant, group)
                    break
            if chosen:
                break
        if not chosen:
            continue
        ext, variant, group = chosen
        keep.extend(f"{folder}/{n}" for n in sorted(group))
        keep.extend(f"{folder}/{n}" for n in names
                    if f"{ext}.index" in n and n.endswith(".json") and _variant(n) == variant)
    return sorted(set(keep), key=keep.index)


def plain_name(name: str) -> str:
    """The name diffusers loads without a `variant=` argument: x.fp16.safetensors → x.safetensors,
    x.safetensors.index.fp16.json → x.safetensors.index.json. Shards keep their names: the index
    lists them."""
    name = re.sub(r"\.(?:fp16|fp32|bf16)(?=\.(?:safetensors|bin)$)", "", name)
    return re.sub(r"\.index\.(?:fp16|fp32|bf16)\.json$", ".index.json", name)


# ---------------------------------------------------------------------------------------------- errors


def _hf_errors():
    """The Hub client's error classes, by name, whatever version is installed."""
    import huggingface_hub

    mod = getattr(huggingface_hub, "errors", None) or huggingface_hub.utils
    names = ("GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
             "LocalEntryNotFoundError", "HfHubHTTPError")
    return {n: getattr(mod, n, None) or getattr(huggingface_hub.utils, n) for n in names}


def explain_error(err: BaseException, ref: HfRef, token: Optional[Token], path: Optional[str] = None) -> Exception:
    """A Hub client error → one of ours, with what to do."""
    e = _hf_errors()
    page = page_url(ref)
    rev = ref.revision or "main"
    fix_token = "set HF_TOKEN or enter it in the Tokens panel (huggingface.co → Settings → Access Tokens)"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, e["GatedRepoError"]):
        who = "with the account of your token" if token else f"while logged in, then {fix_token}"
        return AuthError(f"{ref.repo_id} is a gated repo: accept its licence at {page} {who}")
    if isinstance(err, e["RevisionNotFoundError"]):
        return NotFoundError(f"{ref.repo_id} has no revision {rev!r}: check the branch, tag or commit on {page}")
    if isinstance(err, e["LocalEntryNotFoundError"]):
        return DownloadError(f"cannot reach the Hugging Face Hub ({urlsplit(page).hostname}): check the connection")
    if isinstance(err, e["EntryNotFoundError"]):
        return NotFoundError(f"{ref.repo_id} has no file {path or ref.path!r} at revision {rev!r}: "
                             f"check the name on {page}/tree/{quote(rev, safe='')}")
    if isinstance(err, e["RepositoryNotFoundError"]):
        if token:
            return NotFoundError(f"no Hugging Face repo {ref.repo_id} that your token ({token.origin}) can see: "
                                 "check the name, or use a token of an account with access")
        return NotFoundError(f"no Hugging Face repo {ref.repo_id}: it does not exist or is private; check the name, "
                             f"or {fix_token} for a private repo")
    if status == 401:
        return AuthError(f"Hugging Face rejected the token ({token.origin if token else 'none'}): {fix_token} "
                         "with a valid one")
    if status == 403:
        return AuthError(f"Hugging Face refused {ref.repo_id} for this token (403): give the token read access, "
                         f"or accept the repo's terms at {page}")
    if isinstance(err, e["HfHubHTTPError"]):
        first = redact(str(err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return DownloadError(f"Hugging Face Hub error for {ref.repo_id}: {first}")
    return DownloadError(redact(f"Hugging Face download of {ref.repo_id} failed: {type(err).__name__}: {err}"))


# ---------------------------------------------------------------------------------------------- resolve


def _token(tokens: Optional[TokenStore]) -> Optional[Token]:
    return tokens.get("huggingface") if tokens else None


def _sha256_of(etag: Optional[str]) -> Optional[str]:
    """An LFS file's ETag / X-Linked-Etag is its sha256; a git blob's is a 40-hex sha1 (not usable)."""
    value = (etag or "").strip().strip('"').lower()
    if value.startswith("w/"):
        return None
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else None


def _file_remote(ref: HfRef, path: str, token: Optional[Token], *, size=None, sha256=None, commit=None,
                 subdir=None, kind=None, folder=None, filename=None) -> RemoteFile:
    """A RemoteFile for one repo file, fetched by the byte mover from the Hub's resolve URL (the token goes
    to the Hub host only; the engine never forwards it to the CDN the Hub redirects to)."""
    from huggingface_hub import hf_hub_url

    path = safe_path(path, ref)
    url = hf_hub_url(ref.repo_id, path, repo_type=None if ref.repo_type == "model" else ref.repo_type,
                     revision=commit or ref.revision, endpoint=endpoint_for(ref))
    meta = {"source_name": NAME, "huggingface": {"repo": ref.repo_id, "repo_type": ref.repo_type, "path": path,
                                                 "revision": ref.revision or "main", "commit": commit}}
    if folder:
        meta["folder"] = folder
    return RemoteFile(url=url, filename=filename or local_name(ref, path), size=size, sha256=sha256, kind=kind,
                      subdir=subdir, meta=meta, headers=token.header() if token else {},
                      explain=_http_explainer(ref, token, path))


def safe_path(path: str, ref: HfRef) -> str:
    """A repo path from a listing or a link, refused when it could leave the repo's folder (absolute, `..`,
    backslashes, empty or control-character segments): old clients wrote such paths as given."""
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path)
            or any(p in ("", ".", "..") or any(ord(c) < 32 for c in p) for p in parts)):
        raise DownloadError(f"the Hub listing of {ref.repo_id} names an unsafe path {path[:80]!r} "
                            "(absolute or with '..'): refusing to download this repo")
    return path


def _http_explainer(ref: HfRef, token: Optional[Token], path: str):
    """Error answers from the Hub host, for the engine: the same messages the Hub client's errors get."""

    def explain(status: int, headers, body: bytes, url: str) -> Optional[Exception]:
        if status in (401, 403):
            who = "your token" if token else "no token"
            return AuthError(f"the Hub refused {path} in {ref.repo_id} ({status}) with {who}: if the repo is gated, "
                             f"accept its licence at {page_url(ref)}; if private, set HF_TOKEN to a token that can read it")
        if status == 404:
            return NotFoundError(f"{path} is not in {ref.repo_id} (404): check the file name and revision at "
                                 f"{page_url(ref)}")
        return None

    return explain


def resolve(url: str, tokens: Optional[TokenStore] = None, *, notes: Optional[list] = None):
    """One file → one RemoteFile (size and sha256 from the Hub's HEAD); a repo → its pipeline files."""
    ref = parse(url)
    token = _token(tokens)
    if ref.path:
        return _resolve_file(ref, token)
    return _resolve_repo(ref, token, notes)


def _resolve_file(ref: HfRef, token: Optional[Token]) -> RemoteFile:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(ref.repo_id, ref.path, repo_type=None if ref.repo_type == "model" else ref.repo_type,
                     revision=ref.revision, endpoint=endpoint_for(ref))
    try:
        meta = get_hf_file_metadata(url, token=token.secret.reveal() if token else False)
    except Exception as err:  # the Hub client's errors → ours
        raise explain_error(err, ref, token) from None
    return _file_remote(ref, ref.path, token, size=meta.size, sha256=_sha256_of(meta.etag), commit=meta.commit_hash)


def _resolve_repo(ref: HfRef, token: Optional[Token], notes: Optional[list]):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint_for(ref))
    try:
        info = api.repo_info(ref.repo_id, repo_type=None if ref.repo_type == "model" else ref.repo_type,
                             revision=ref.revision, files_metadata=True,
                             token=token.secret.reveal() if token else False)
    except Exception as err:
        raise explain_error(err, ref, token) from None
    siblings = {safe_path(s.rfilename, ref): s for s in (info.siblings or [])}
    names = list(siblings)
    if "model_index.json" in siblings:
        wanted = pipeline_files(names)
        if notes is not None:
            notes.append(f"{ref.repo_id} is a diffusers pipeline: fetching {len(wanted)} of its {len(names)} files "
                         f"into checkpoint/{ref.name}/")
        files = []
        for path in wanted:
            s = siblings.get(path)
            lfs = getattr(s, "lfs", None)
            sha = _lfs_sha(lfs)
            size = getattr(s, "size", None)
            files.append(_file_remote(ref, path, token, size=size, sha256=sha, commit=info.sha, kind="checkpoint",
                                      subdir=posixpath.dirname(path) or None, folder=ref.name,
                                      filename=plain_name(posixpath.basename(path))))
        return files
    weights = [n for n in names if n.lower().endswith(WEIGHT_EXTENSIONS)]
    safe = [n for n in weights if n.lower().endswith(".safetensors")]
    pickable = safe if len(safe) == 1 else (weights if len(weights) == 1 else [])
    if not pickable:
        listed = ", ".join(sorted(weights)[:4]) + ("…" if len(weights) > 4 else "")
        if not weights:
            raise NotFoundError(f"{ref.repo_id} has no model file and is not a diffusers pipeline "
                                "(no model_index.json); check the repo")
        raise InputError(f"{ref.repo_id} holds {len(weights)} model files ({listed}) and is not a diffusers "
                         f"pipeline: paste the one you want, e.g. {ref.repo_id}/{sorted(weights)[0]}")
    path = pickable[0]
    s = siblings[path]
    return _file_remote(ref, path, token, size=getattr(s, "size", None), sha256=_lfs_sha(getattr(s, "lfs", None)),
                        commit=info.sha)


def _lfs_sha(lfs: Any) -> Optional[str]:
    if lfs is None:
        return None
    value = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    return _sha256_of(value)
