"""A1111 "parameters" text (what CivitAI and A1111 read from a PNG), model hashes, and output files.

    a photo of a cat <lora:film:0.8>
    Negative prompt: blurry
    Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768,
    Model hash: 6ce0161689, Model: dreamshaper_8, Lora hashes: "film: 0123456789", Version: colab_sd 0.1.0

(one line after "Negative prompt", wrapped here). Hashes are AutoV2: the first 10 hex digits of the file's sha256,
taken from the library sidecar when the download recorded it, else computed once and written back to it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Iterable, Optional

from ..library import read_sidecar, write_sidecar
from .. import hosts
from ..tokens import in_colab

# ---------------------------------------------------------------------------------------------- infotext


def _quote(value: object) -> str:
    """A1111's rule: a value holding a comma, colon, quote or newline is written as a JSON string."""
    text = str(value)
    if any(c in text for c in ',\n:"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _number(value: float) -> str:
    return f"{value:g}"


def build_parameters(prompt: str, negative: str, params: dict) -> str:
    """The `parameters` text: prompt, "Negative prompt:" line, then `Key: value` pairs in the order given.

    None values are left out.
    """
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    pairs = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        if isinstance(value, float):
            value = _number(value)
        pairs.append(f"{key}: {_quote(value)}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


_PARAM = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict:
    """The inverse of `build_parameters` (the same reading A1111's "PNG Info" does).

    Returns {"prompt", "negative_prompt", and each key: value}; quoted values are unquoted, numbers stay strings.
    """
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    params_line = ""
    if len(_PARAM.findall(last)) >= 3:
        params_line = last
        lines = lines[:-1]
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(params_line):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        result[key.strip()] = value
    return result


def parse_hash_list(value: str) -> dict[str, str]:
    """`"name: hash, name2: hash"` (the Lora hashes / TI hashes value) as a dict."""
    out = {}
    for part in value.split(","):
        name, _, digest = part.strip().rpartition(":")
        if name:
            out[name.strip()] = digest.strip()
    return out


# ---------------------------------------------------------------------------------------------- hashes

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: os.PathLike | str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def autov2(path: os.PathLike | str, compute: bool = True) -> Optional[str]:
    """AutoV2 hash of a model file (10 hex); None for folders, or when unknown and `compute` is False.

    The sidecar's sha256 is trusted (the download verified it); a computed one is written back to the sidecar
    so that a 6 GB checkpoint is hashed once, not on every image.
    """
    path = Path(path)
    if not path.is_file():
        return None
    sha = (read_sidecar(path).get("sha256") or "").strip().lower()
    if re.fullmatch(r"[0-9a-f]{64}", sha):
        return sha[:10]
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, int(stat.st_mtime))
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key][:10]
    if not compute:
        return None
    sha = file_sha256(path)
    with _HASH_LOCK:
        _HASH_CACHE[key] = sha
    try:
        meta = read_sidecar(path)
        meta["sha256"] = sha
        write_sidecar(path, meta)
    except OSError:  # a read-only folder (a shared Drive): the in-memory cache still saves the rework
        pass
    return sha[:10]


# ---------------------------------------------------------------------------------------------- files


def outputs_root(outputs_dir: Optional[os.PathLike | str] = None) -> Path:
    """Where images go: explicit → $COLAB_SD_OUTPUTS → the host's default (Colab /content/outputs, Kaggle
    /kaggle/working/outputs: saved with the notebook) → ./outputs."""
    if outputs_dir:
        return Path(outputs_dir).expanduser()
    env = os.environ.get("COLAB_SD_OUTPUTS", "").strip()
    if env:
        return Path(env).expanduser()
    return hosts.colab_root() / "outputs" if in_colab() else hosts.default_outputs_dir()  # Kaggle: /kaggle/working/outputs


_NAME_LOCK = threading.Lock()


def output_path(folder: os.PathLike | str, seed: int, when: Optional[_dt.datetime] = None) -> Path:
    """`<folder>/<YYYY-MM-DD>/<YYYYMMDD-HHMMSS-mmm>-<seed>.png`: names sort by time and show the seed.

    A same-millisecond clash gets `-2`, `-3`… so nothing is overwritten.
    """
    when = when or _dt.datetime.now()
    day = Path(folder) / when.strftime("%Y-%m-%d")
    stem = f"{when.strftime('%Y%m%d-%H%M%S')}-{when.microsecond // 1000:03d}-{seed}"
    with _NAME_LOCK:
        day.mkdir(parents=True, exist_ok=True)
        path, n = day / f"{stem}.png", 1
        while path.exists():
            n += 1
            path = day / f"{stem}-{n}.png"
        path.touch()  # claim the name before releasing the lock
    return path


def save_png(image, path: os.PathLike | str, parameters: str) -> Path:
    """Save a PIL image as PNG with the A1111 `parameters` tEXt chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # Level 1: on a 1024² image about 40 % less encoding time than the default 6 for about 13 % more bytes,
    # which kept the saved image within the overhead budget of a generation on a fast GPU.
    image.save(tmp, format="PNG", pnginfo=info, compress_level=1)
    os.replace(tmp, path)
    return path


def read_png_parameters(path: os.PathLike | str) -> Optional[str]:
    """The `parameters` text of a PNG, or None."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img.info.get("parameters") or (getattr(img, "text", {}) or {}).get("parameters")


def hash_list(items: Iterable[tuple[str, Optional[str]]]) -> Optional[str]:
    """`name: hash, …` for the items with a known hash, or None."""
    parts = [f"{name}: {digest}" for name, digest in items if digest]
    return ", ".join(parts) or None
