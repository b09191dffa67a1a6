"""Model hashes as A1111 writes them into the infotext, and the output files (paths, PNG saving).

Hashes (A1111 modules/hashes.py, lora network.py; CivitAI's AutoV1/V2/V3): `Model hash` / `VAE hash` = AutoV2, the
first 10 hex of the file's sha256; `TI hashes` = 12 hex of the file's sha256; `Lora hashes` = AutoV3, 12 hex of the
safetensors "addnet" hash (sha256 of the file after its 8-byte length and JSON header). The sha256 comes from the
library sidecar when the download recorded it, else it is computed once and written back to the sidecar.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import struct
import threading
from pathlib import Path
from typing import Optional

from .. import infotext as _infotext
from ..library import read_sidecar, update_sidecar
from ..hashing import file_sha256
from .. import hosts
from ..tokens import in_colab

# The infotext itself (writing and reading) lives in colab_sd.infotext; these names stay for the engine and callers.
build_parameters, parse_parameters = _infotext.build_parameters, _infotext.parse_parameters
parse_hash_list, hash_list = _infotext.parse_hash_list, _infotext.hash_list


# ---------------------------------------------------------------------------------------------- hashes

_HASH_CACHE: dict[tuple[str, str, int, int], str] = {}
_HASH_LOCK = threading.Lock()
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _cached_hash(path: Path, field: str, compute: bool, digest) -> Optional[str]:
    """A full sha256 hex kept in the sidecar under `field` (trusted: the download verified it), else computed
    by `digest(path)` once, remembered and written back so that a 6 GB checkpoint is hashed once, not per image."""
    if not path.is_file():
        return None
    known = str(read_sidecar(path).get(field) or "").strip().lower()
    if _HEX64.fullmatch(known):
        return known
    stat = path.stat()
    key = (field, str(path.resolve()), stat.st_size, int(stat.st_mtime))
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    if not compute:
        return None
    value = digest(path)
    with _HASH_LOCK:
        _HASH_CACHE[key] = value
    try:
        update_sidecar(path, {field: value})
    except OSError:  # a read-only folder (a shared Drive): the in-memory cache still saves the rework
        pass
    return value


def sha256_of(path: os.PathLike | str, compute: bool = True) -> Optional[str]:
    """The file's sha256 (64 hex); None for folders, or when unknown and `compute` is False."""
    return _cached_hash(Path(path), "sha256", compute, lambda p: file_sha256(p).hexdigest())


def autov2(path: os.PathLike | str, compute: bool = True) -> Optional[str]:
    """AutoV2 (`Model hash`): the first 10 hex of the file's sha256."""
    sha = sha256_of(path, compute)
    return sha[:10] if sha else None


def autov1(path: os.PathLike | str) -> Optional[str]:
    """AutoV1 (old 8-hex `Model hash`): sha256 of the 64 KiB at offset 1 MiB. Cheap: no caching."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0x100000)
            return hashlib.sha256(fh.read(0x10000)).hexdigest()[:8]
    except OSError:
        return None


def _addnet_sha256(path: Path) -> str:
    """sha256 of a safetensors file's tensor bytes (after the 8-byte header length and the JSON header)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        header = fh.read(8)
        length = struct.unpack("<Q", header)[0] if len(header) == 8 else 0
        fh.seek(8 + length)
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def lora_hash(path: os.PathLike | str, compute: bool = True) -> Optional[str]:
    """AutoV3 (`Lora hashes`): 12 hex of the addnet hash for .safetensors, of the file's sha256 otherwise (A1111)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        sha = sha256_of(path, compute)
        return sha[:12] if sha else None
    value = _cached_hash(path, "addnet_sha256", compute, _addnet_sha256)
    return value[:12] if value else None


def embedding_hash(path: os.PathLike | str, compute: bool = True) -> Optional[str]:
    """`TI hashes`: 12 hex of the file's sha256 (A1111 textual_inversion.py)."""
    sha = sha256_of(path, compute)
    return sha[:12] if sha else None


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
    """The `parameters` text of an image file, or None (colab_sd.infotext reads it, without Pillow for PNG)."""
    from ..infotext.files import read_raw

    return read_raw(path).texts.get("parameters")
