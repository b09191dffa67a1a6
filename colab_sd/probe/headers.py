"""Bounded header readers: safetensors (length + JSON) and GGUF (key/values + tensor infos); no tensor data."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Optional

from ..errors import InputError

# A real header is at most a few MB (a 3,000-tensor checkpoint is ~300 KB); anything near this is garbage.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def open_binary(path):
    """The one place probe opens files (tests wrap it to count the bytes read)."""
    return open(path, "rb")


def display_name(path) -> str:
    return Path(path).name or str(path)


def _refetch_hint() -> str:
    return "download it again, or check that the link points to the model file itself"


def sniff(head: bytes) -> Optional[str]:
    """What the first bytes of a file that is not safetensors look like, for messages; None when unknown."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch .ckpt/.pt file is one), not safetensors"
    if head.startswith(b"GGUF"):
        return "a GGUF file, not safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a legacy PyTorch .ckpt/.pt), not safetensors"
    text = head.lstrip()[:64].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return ("an HTML page (often a login or error page saved in place of the model; "
                "a CivitAI model may need a token)")
    if text.startswith((b"{", b"[")):
        return "a JSON document (often an API error saved in place of the model)"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        return "an XML document (often a storage error page)"
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (use the 'resolve' link, not 'blob')"
    return None


def read_safetensors_header(path) -> dict:
    """The JSON header of a safetensors file (tensor entries and "__metadata__"), reading only the header.

    Raises InputError with a one-line message when the file is not safetensors, is corrupt or is truncated.
    """
    name = display_name(path)
    try:
        with open_binary(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{name} is not a safetensors file: only {size} bytes long; {_refetch_hint()}")
            (length,) = struct.unpack("<Q", head)
            if length == 0 or length > MAX_HEADER_BYTES or length > size - 8:
                more = f.read(56)
                sniffed = sniff(head + more)
                if sniffed:
                    raise InputError(f"{name} is not a safetensors file: it is {sniffed}; {_refetch_hint()}")
                if 0 < length <= MAX_HEADER_BYTES and more[:1] == b"{":
                    raise InputError(f"{name} is truncated: its safetensors header should be {length} bytes but the "
                                     f"file holds only {size - 8} after the length field; {_refetch_hint()}")
                raise InputError(
                    f"{name} is not a safetensors file: its header length {length} is impossible for a "
                    f"{size}-byte file (limit {MAX_HEADER_BYTES}); {_refetch_hint()}")
            raw = f.read(length)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a folder, not a safetensors file") from None
    except PermissionError:
        raise InputError(f"{name} cannot be read (permission denied); check the file's permissions") from None
    if len(raw) < length:
        raise InputError(f"{name} is truncated inside its safetensors header; {_refetch_hint()}")
    if not raw.lstrip()[:1] == b"{":
        raise InputError(f"{name} is not a safetensors file: the header is not JSON; {_refetch_hint()}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise InputError(f"{name} has a corrupt safetensors header (absurdly nested JSON); {_refetch_hint()}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{name} has a corrupt safetensors header (bad JSON: {str(exc).splitlines()[0]}); "
                         f"{_refetch_hint()}") from None
    if not isinstance(header, dict):
        raise InputError(f"{name} has a corrupt safetensors header (not a JSON object); {_refetch_hint()}")
    data_len = size - 8 - length
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict):
                raise InputError(f"{name} has a corrupt safetensors header (__metadata__ is not an object); "
                                 f"{_refetch_hint()}")
            continue
        if not _valid_entry(entry):
            raise InputError(f"{name} has a corrupt safetensors header (bad entry for tensor {key[:80]!r}); "
                             f"{_refetch_hint()}")
        end = max(end, entry["data_offsets"][1])
    if end > data_len:
        raise InputError(f"{name} is truncated: its header promises {end} bytes of tensor data but only {data_len} "
                         f"are there; {_refetch_hint()}")
    return header


def _valid_entry(entry) -> bool:
    """A tensor entry as the format defines it: {"dtype": str, "shape": [int ≥ 0], "data_offsets": [b ≤ e]}."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    return (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(o, int) and o >= 0 for o in offsets) and offsets[0] <= offsets[1])


def shapes_from_header(header: dict) -> tuple[dict, dict]:
    """(tensor name → shape, metadata as strings) from a parsed header."""
    meta = header.get("__metadata__") or {}
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    shapes = {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    return shapes, metadata


# ------------------------------------------------------------------------------------------------ GGUF

_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class BoundedReader:
    """Reads from `f`, refusing to go past `limit` bytes in total (a corrupt count cannot make us read the file)."""

    def __init__(self, f, limit: int):
        self.f, self.left = f, limit

    def read(self, n: int) -> bytes:
        if n < 0 or n > self.left:
            raise ValueError("header larger than the limit")
        data = self.f.read(n)
        if len(data) < n:
            raise ValueError("file ends inside the header")
        self.left -= n
        return data

    def readline(self) -> bytes:  # pickletools needs it for text opcodes
        data = self.f.readline(min(self.left, 1 << 20))
        self.left -= len(data)
        return data


def read_gguf(f, size: int) -> tuple[dict, dict]:
    """Tensor name → torch-order shape, and the short string key/values, from a GGUF header."""
    r = BoundedReader(f, min(size, MAX_HEADER_BYTES))
    if r.read(4) != b"GGUF":
        raise ValueError("no GGUF magic")
    (version,) = struct.unpack("<I", r.read(4))
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old to read")
    n_tensors, n_kv = struct.unpack("<QQ", r.read(16))
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise ValueError("impossible tensor or key counts")

    def string() -> str:
        (n,) = struct.unpack("<Q", r.read(8))
        return r.read(n).decode("utf-8", "replace")

    def value(vtype: int):
        if vtype in _GGUF_SCALAR:
            fmt = _GGUF_SCALAR[vtype]
            return struct.unpack(fmt, r.read(struct.calcsize(fmt)))[0]
        if vtype == 8:
            return string()
        if vtype == 9:
            itype, count = struct.unpack("<IQ", r.read(12))
            if itype in _GGUF_SCALAR:  # skip fixed-size arrays without decoding
                r.read(struct.calcsize(_GGUF_SCALAR[itype]) * count)
            else:
                for _ in range(count):
                    value(itype)
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")

    kv, alignment = {}, 32
    for _ in range(n_kv):
        key = string()
        (vtype,) = struct.unpack("<I", r.read(4))
        val = value(vtype)
        if isinstance(val, str) and len(val) <= 1024:
            kv[key] = val
        elif key == "general.alignment" and isinstance(val, int) and val > 0:
            alignment = val
    shapes, data_end = {}, 0
    for _ in range(n_tensors):
        tname = string()
        (n_dims,) = struct.unpack("<I", r.read(4))
        if n_dims > 8:
            raise ValueError("impossible tensor rank")
        dims = struct.unpack(f"<{n_dims}Q", r.read(8 * n_dims))
        ggml_type, offset = struct.unpack("<IQ", r.read(12))
        shapes[tname] = list(reversed(dims))  # ggml lists the fastest-moving dimension first
        data_end = max(data_end, offset + _ggml_bytes(ggml_type, dims))
    start = -(-(min(size, MAX_HEADER_BYTES) - r.left) // alignment) * alignment  # tensor data: aligned after the header
    if start + data_end > size:
        raise GGUFTruncated(f"its tensors need {start + data_end} bytes but the file has {size}")
    return shapes, kv


class GGUFTruncated(ValueError):
    """A GGUF file shorter than its tensor table says: a download cut short."""


# ggml type id → (elements per block, bytes per block), ggml.h / gguf-py GGML_QUANT_SIZES (tests compare the two)
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
               10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
               16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
               22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
               29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18)}


def _ggml_bytes(ggml_type: int, dims) -> int:
    """Bytes a tensor of this ggml type and shape occupies; 0 for a type not in the table (not checked)."""
    block, nbytes = GGML_BLOCKS.get(ggml_type, (0, 0))
    if not block:
        return 0
    count = 1
    for d in dims:
        count *= int(d)
    return count // block * nbytes
