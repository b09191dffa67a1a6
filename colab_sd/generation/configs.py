"""Config folders for single-file checkpoints, so that loading one never asks the Hub.

`from_single_file(path, config=FOLDER)` needs a diffusers-layout folder with the component configs and the
tokenizer files. colab_sd bundles the configs (a few kB per family, under `configs/<family>/`) and assembles
the folder once in a cache: `$COLAB_SD_CONFIGS`, else `$XDG_CACHE_HOME/colab_sd/configs` (~/.cache/…).

The CLIP tokenizer files (vocab.json 1 MB + merges.txt 0.5 MB, the same BPE for SD1, SD2 and both SDXL
tokenizers) are not bundled: they are fetched once from `openai/clip-vit-large-patch14` through
huggingface_hub (its cache first, so an offline machine that has them works) and copied into the folder.

A folder already in the cache without colab_sd's stamp file is the user's own (for a custom architecture, or
tests' tiny ones) and is used as it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Optional

from ..errors import GenerationError

log = logging.getLogger("colab_sd.generation")

BUNDLED = Path(__file__).with_name("configs")
FAMILIES = ("sd1", "sd2", "sdxl")
TOKENIZER_REPO = "openai/clip-vit-large-patch14"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
STAMP = ".colab_sd-bundle"


def configs_root() -> Path:
    env = os.environ.get("COLAB_SD_CONFIGS", "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "colab_sd" / "configs"


def _bundle_digest(family: str) -> str:
    digest = hashlib.sha256()
    for path in sorted((BUNDLED / family).rglob("*.json")):
        digest.update(path.relative_to(BUNDLED).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _tokenizer_dirs(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob("tokenizer*/tokenizer_config.json"))


def _has_tokenizer(tok: Path) -> bool:
    """vocab.json + merges.txt, or the tokenizer.json that transformers 5 writes instead."""
    return (tok / "tokenizer.json").is_file() or all((tok / name).is_file() for name in TOKENIZER_FILES)


def _complete(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() and all(_has_tokenizer(tok) for tok in _tokenizer_dirs(folder))


def config_folder(family: str, root: Optional[os.PathLike | str] = None, *, token: Optional[str] = None) -> Path:
    """A complete diffusers config folder (no weights) for `family` ("sd1", "sd2", "sdxl")."""
    if family not in FAMILIES:
        raise GenerationError(f"no bundled config for the {family} family: pass config= a diffusers folder or repo id")
    root = Path(root) if root else configs_root()
    folder = root / family
    stamp = folder / STAMP
    if _complete(folder) and (not stamp.exists() or stamp.read_text().strip() == _bundle_digest(family)):
        return folder
    files = tokenizer_files(token=token)  # first: offline without them, nothing is written
    tmp = root / f".{family}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(BUNDLED / family, tmp)
        for tok in _tokenizer_dirs(tmp):
            for name, src in files.items():
                shutil.copyfile(src, tok / name)
        (tmp / STAMP).write_text(_bundle_digest(family) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled the %s config folder at %s", family, folder)
    return folder


def tokenizer_files(token: Optional[str] = None) -> dict[str, Path]:
    """Local paths of the CLIP tokenizer files: the huggingface_hub cache, else a one-time download."""
    from huggingface_hub import hf_hub_download

    found = {}
    for name in TOKENIZER_FILES:
        try:
            found[name] = Path(hf_hub_download(TOKENIZER_REPO, name, token=token))
        except Exception as err:  # offline without a cached copy, or the Hub unreachable
            raise GenerationError(
                f"loading a single-file checkpoint needs the CLIP tokenizer files once ({TOKENIZER_REPO}/{name}) and "
                f"they could not be fetched ({type(err).__name__}): connect to the internet once, or put a diffusers "
                f"config folder in {configs_root()}/<family>/ or pass config=") from None
    return found


def model_index(folder: os.PathLike | str) -> dict:
    try:
        return json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
