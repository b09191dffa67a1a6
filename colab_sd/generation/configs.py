"""Config folders for single-file checkpoints, so that loading one never asks the Hub.

`from_single_file(path, config=FOLDER)` needs a diffusers-layout folder with the component configs and the
tokenizer files. colab_sd bundles the configs (a few kB per family, under `configs/<family>/`) and assembles
the folder once in a cache: `$COLAB_SD_CONFIGS`, else `$XDG_CACHE_HOME/colab_sd/configs` (~/.cache/…).

The CLIP tokenizer (the same BPE for SD1, SD2 and both SDXL tokenizers; MIT-licensed by OpenAI, see
`configs/clip/LICENSE`) is bundled too, as its 48,894 BPE merges (gzip, 200 kB): merges.txt and vocab.json are
written from them exactly as CLIP builds its vocabulary (256 byte symbols, the same with `</w>`, one token per
merge, then <|startoftext|> 49406 and <|endoftext|> 49407). So a single file loads offline, with no Hub call.

A folder already in the cache without colab_sd's stamp file is the user's own (for a custom architecture, or
tests' tiny ones) and is used as it is.
"""
from __future__ import annotations

import gzip
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
TOKENIZER_FILES = ("vocab.json", "merges.txt")
CLIP_MERGES = BUNDLED / "clip" / "merges.txt.gz"
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
STAMP = ".colab_sd-bundle"


def configs_root() -> Path:
    env = os.environ.get("COLAB_SD_CONFIGS", "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "colab_sd" / "configs"


def _bundle_digest(family: str) -> str:
    digest = hashlib.sha256()
    for path in sorted((BUNDLED / family).rglob("*.json")) + [CLIP_MERGES]:
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


def config_folder(family: str, root: Optional[os.PathLike | str] = None) -> Path:
    """A complete diffusers config folder (no weights) for `family` ("sd1", "sd2", "sdxl")."""
    if family not in FAMILIES:
        raise GenerationError(f"no bundled config for the {family} family: pass config= a diffusers folder or repo id")
    root = Path(root) if root else configs_root()
    folder = root / family
    stamp = folder / STAMP
    if _complete(folder) and (not stamp.exists() or stamp.read_text().strip() == _bundle_digest(family)):
        return folder
    files = tokenizer_files()
    tmp = root / f".{family}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(BUNDLED / family, tmp)
        for tok in _tokenizer_dirs(tmp):
            for name, text in files.items():
                (tok / name).write_text(text, encoding="utf-8")
        (tmp / STAMP).write_text(_bundle_digest(family) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled the %s config folder at %s", family, folder)
    return folder


def _bytes_to_unicode() -> list[str]:
    """CLIP's printable stand-ins for the 256 byte values, in its order (openai/CLIP simple_tokenizer.py)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tokenizer_files() -> dict[str, str]:
    """{"merges.txt": …, "vocab.json": …} of the CLIP tokenizer, from the bundled merges (no network)."""
    try:
        with gzip.open(CLIP_MERGES, "rt", encoding="utf-8") as fh:
            merges_text = fh.read()
    except OSError as err:
        raise GenerationError(f"the bundled CLIP tokenizer ({CLIP_MERGES}) cannot be read ({err}): reinstall "
                              f"colab_sd, or pass --config a diffusers folder with its tokenizer") from None
    merges = merges_text.strip().split("\n")[1:]
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + list(_SPECIAL)
    vocab = {token: i for i, token in enumerate(tokens)}
    return {"merges.txt": merges_text, "vocab.json": json.dumps(vocab, ensure_ascii=False)}


def model_index(folder: os.PathLike | str) -> dict:
    try:
        return json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
