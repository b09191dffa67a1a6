"""The models library: one folder per model kind under a models root, and a JSON sidecar per file.

    <root>/checkpoint/dreamshaper_8.safetensors
    <root>/checkpoint/dreamshaper_8.safetensors.json   ← source URL (redacted), sha256, kind, base model, trigger words

The root is, in order: an explicit `models_dir`, `$COLAB_SD_HOME`, the host's default (`hosts.detect()`:
`/content/models` in Colab, `/kaggle/temp/models` on Kaggle), `./models`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .errors import InputError
from . import hosts
from .tokens import in_colab, redact, redact_url
from .units import folder_size

# Kind → folder name (they are the same word, on purpose: what a user types is what they see on disk).
# text_encoder: T5-XXL / CLIP-L / CLIP-G / Qwen3 files that transformer-only checkpoints (Flux, Z-Image…) need.
KINDS = ("checkpoint", "lora", "vae", "embedding", "controlnet", "upscaler", "text_encoder", "other")

# Words users (and other tools) use for a kind.
_ALIASES = {
    "checkpoints": "checkpoint", "ckpt": "checkpoint", "model": "checkpoint", "models": "checkpoint",
    "stable-diffusion": "checkpoint", "stable_diffusion": "checkpoint",
    "loras": "lora", "locon": "lora", "lycoris": "lora", "dora": "lora",
    "vaes": "vae",
    "embeddings": "embedding", "textualinversion": "embedding", "textual_inversion": "embedding",
    "textual-inversion": "embedding", "ti": "embedding", "negative": "embedding",
    "controlnets": "controlnet", "upscalers": "upscaler", "esrgan": "upscaler",
    "text_encoders": "text_encoder", "text-encoder": "text_encoder", "clip": "text_encoder", "t5": "text_encoder",
    "embed": "embedding",  # CivitAI's resource type in image metadata
}

# How a kind reads in a sentence ("an SDXL LoRA", "a VAE").
KIND_LABELS = {"checkpoint": "checkpoint", "lora": "LoRA", "vae": "VAE", "embedding": "embedding",
               "controlnet": "ControlNet", "upscaler": "upscaler", "text_encoder": "text encoder",
               "other": "other model"}

# Extensions that are model weights (listing shows these; the download engine expects binary bodies).
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


def without_extension(name: str) -> str:
    """`styles/film.safetensors` → `styles/film`: a model name as prompts and infotext write it."""
    lower = name.lower()
    return next((name[: -len(ext)] for ext in MODEL_EXTENSIONS if lower.endswith(ext)), name)

SIDECAR_SUFFIX = ".json"


def kind_of(word: Optional[str]) -> Optional[str]:
    """The kind a word names (a kind, a plural, another tool's word such as CivitAI's "LoCon"), or None."""
    word = str(word or "").strip().lower().replace(" ", "")
    word = _ALIASES.get(word, word)
    return word if word in KINDS else None


def normalize_kind(kind: Optional[str]) -> Optional[str]:
    """A kind name as a folder name, or None for "auto"; raises InputError for an unknown word."""
    if kind is None:
        return None
    word = str(kind).strip().lower()
    if word in ("", "auto"):
        return None
    word = _ALIASES.get(word, word)
    if word not in KINDS:
        raise InputError(f"unknown model type {kind!r}: use one of {', '.join(KINDS)} (or auto)")
    return word


def models_root(models_dir: Optional[os.PathLike | str] = None) -> Path:
    """The models root folder (not created)."""
    if models_dir:
        return Path(models_dir).expanduser()
    env = os.environ.get("COLAB_SD_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    if in_colab():
        return hosts.colab_root() / "models"
    return hosts.default_models_dir()  # /kaggle/temp/models on Kaggle, ./models elsewhere


def kind_dir(root: os.PathLike | str, kind: Optional[str]) -> Path:
    """The folder for `kind` under `root` (created); None means "other".

    Raises InputError with a sentence when it cannot be created (the root is a file, a read-only place, …).
    """
    folder = Path(root) / (normalize_kind(kind) or "other")
    return make_folder(folder)


def make_folder(folder: Path, what: str = "models folder", hint: str = "--dir, or models_dir=") -> Path:
    """`folder` created with its parents, or InputError saying why not and what to do (choose another `what`)."""
    folder = Path(folder)
    choose = f"choose another {what} ({hint})"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise InputError(f"{blocker} is a file, not a folder: {choose}") from None
    except PermissionError:
        raise InputError(f"cannot create {folder}: permission denied; {choose}") from None
    except OSError as err:  # a read-only file system, /proc, a missing drive, a name too long
        raise InputError(f"cannot create {folder} ({err.strerror or err}); {choose}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder} is read-only: {choose}")
    return folder


def new_folders(root: os.PathLike | str) -> list[Path]:
    """The models root and kind folders that do not exist yet, parents first: what a download may create."""
    root = Path(root)
    return [p for p in [root, *(root / k for k in KINDS)] if not p.exists()]


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove those of `folders` that are (still) empty, children first: a failed download leaves none behind."""
    for folder in reversed(list(folders)):
        try:
            folder.rmdir()
        except OSError:  # not empty (a model, a resumable .part), or already gone
            pass


def merge_tree(src: os.PathLike | str, dst: os.PathLike | str) -> None:
    """Move every file of folder `src` into `dst` (same filesystem), replacing same-named ones, then drop `src`."""
    import shutil

    src, dst = Path(src), Path(dst)
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(src, ignore_errors=True)


def ensure_layout(root: os.PathLike | str) -> Path:
    """Create every kind folder under `root` and return it."""
    root = Path(root)
    for kind in KINDS:
        make_folder(root / kind)
    return root


# ---------------------------------------------------------------------------------------------- sidecars


def sidecar_path(model_path: os.PathLike | str) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + SIDECAR_SUFFIX)


def write_sidecar(model_path: os.PathLike | str, meta: dict) -> Path:
    """Write `<file>.json` beside a model (atomically); URLs in it are redacted, tokens never stored."""
    data = {k: v for k, v in meta.items() if v is not None}
    if "source" in data:
        data["source"] = redact_url(str(data["source"]))
    data.setdefault("downloaded_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    text = redact(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True), urls=False)
    path = sidecar_path(model_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_sidecar(model_path: os.PathLike | str) -> dict:
    """The sidecar's data, or {} when there is none, it is unreadable, or it is not a JSON object.

    A damaged sidecar (truncated by a crash, a list or a number written by hand or by another tool) counts as
    absent: it must never break listing, lookups or an unrelated download.
    """
    try:
        data = json.loads(sidecar_path(model_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return {}
    if not isinstance(data, dict):
        return {}
    # Known fields of the wrong JSON type are dropped, so that readers can trust `meta.get(field)`'s type.
    clean = {k: v for k, v in data.items() if k not in _FIELD_TYPES or _is_a(v, _FIELD_TYPES[k])}
    for key in ("trigger_words", "also_sources"):
        if key in clean:
            clean[key] = [v for v in clean[key] if isinstance(v, str)]
    return clean


# The sidecar fields colab_sd reads, with their JSON types.
_FIELD_TYPES = {"source": str, "sha256": str, "kind": str, "base_model": str, "family": str, "size": int,
                "trigger_words": list, "also_sources": list, "civitai": dict, "files": int}


def _is_a(value, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


# ---------------------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ModelEntry:
    """One model on disk, as the library lists it."""

    kind: str
    name: str  # relative to the kind folder, with "/" separators (a diffusers folder is one entry)
    path: Path
    size: int
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def base_model(self) -> Optional[str]:
        return self.meta.get("base_model") or self.meta.get("family")

    @property
    def trigger_words(self) -> list[str]:
        return list(self.meta.get("trigger_words") or [])

    @property
    def stem(self) -> str:
        """The name without its extension (how prompts refer to LoRAs and embeddings)."""
        return without_extension(self.name.rsplit("/", 1)[-1])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": str(self.path), "size": self.size,
                "base_model": self.base_model, "trigger_words": self.trigger_words,
                "sha256": self.meta.get("sha256"), "family": self.meta.get("family"),
                "source": self.meta.get("source")}


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def list_models(root: os.PathLike | str, kinds: Optional[Iterable[str]] = None) -> list[ModelEntry]:
    """Every model under `root`, sorted by kind then name; `.part` files and sidecars are not models."""
    root = Path(root)
    wanted = [normalize_kind(k) for k in kinds] if kinds else list(KINDS)
    entries: list[ModelEntry] = []
    for kind in wanted:
        folder = root / kind
        if not folder.is_dir():
            continue
        entries.extend(_scan(folder, kind))
    return sorted(entries, key=lambda e: (KINDS.index(e.kind), e.name.lower()))


def _scan(folder: Path, kind: str) -> Iterable[ModelEntry]:
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        kept = []
        for d in dirnames:
            sub = here / d
            if _is_diffusers_folder(sub):
                # A diffusers folder is one model: list it whole, do not descend.
                yield ModelEntry(kind, sub.relative_to(folder).as_posix(), sub, folder_size(sub), read_sidecar(sub))
            else:
                kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if not name.lower().endswith(MODEL_EXTENSIONS):
                continue
            path = here / name
            yield ModelEntry(kind, path.relative_to(folder).as_posix(), path, path.stat().st_size, read_sidecar(path))


def find_model(root: os.PathLike | str, kind: str, name: str) -> Optional[ModelEntry]:
    """A model of `kind` by its name, with or without extension (case-insensitive on a tie-free match)."""
    entries = list_models(root, [kind])
    wanted = name.replace("\\", "/").strip("/")

    def bare(entry: ModelEntry) -> str:  # the name without its extension, folders kept ("sub/style")
        folder = entry.name.rpartition("/")[0]
        return f"{folder}/{entry.stem}" if folder else entry.stem

    low = wanted.lower()
    for match in (lambda e: e.name == wanted, lambda e: bare(e) == wanted, lambda e: e.stem == wanted,
                  lambda e: e.name.lower() == low, lambda e: bare(e).lower() == low, lambda e: e.stem.lower() == low):
        found = [e for e in entries if match(e)]
        if len(found) == 1:
            return found[0]
    return None


def find_by_source(root: os.PathLike | str, source: str, kind: Optional[str] = None,
                   sha256: Optional[str] = None) -> Optional[Path]:
    """The model (file or folder) downloaded from `source` before, when it is still there whole.

    Matches the sidecar's (redacted) source URL or one of its `also_sources`; the model must exist with the sidecar's size and,
    when `sha256` is given, the sidecar's sha256 must be that one. Looks in `kind`'s folder only
    when a kind is given.
    """
    wanted = redact_url(source.strip())
    root = Path(root)
    for k in ([normalize_kind(kind)] if kind else list(KINDS)):
        folder = root / k
        if not folder.is_dir():
            continue
        for side in folder.rglob("*" + SIDECAR_SUFFIX):
            if any(part.startswith(".") for part in side.relative_to(folder).parts):
                continue  # staging folders
            model = side.with_name(side.name[: -len(SIDECAR_SUFFIX)])
            if not model.exists():
                continue
            meta = read_sidecar(model)
            if meta.get("source") != wanted and wanted not in (meta.get("also_sources") or []):
                continue
            if sha256 and (meta.get("sha256") or "").lower() != sha256.lower():
                continue
            size = model.stat().st_size if model.is_file() else folder_size(model)
            if meta.get("size") is not None and meta["size"] != size:
                continue
            return model
    return None


def update_sidecar(model_path: os.PathLike | str, fields: dict) -> Path:
    """Merge `fields` into a model's sidecar (creating it), keeping what it already says otherwise."""
    data = read_sidecar(model_path)
    data.update({k: v for k, v in fields.items() if v is not None})
    return write_sidecar(model_path, data)
