"""What is this model file? Kind (library folder), base family and variant, from headers alone.

Reads only headers, never tensor data, and never imports torch:

- safetensors: 8 bytes little-endian header length N, then N bytes of JSON (`headers`);
- GGUF: the key/value and tensor-info sections before the data (`headers`);
- torch pickles (.ckpt/.pt/.pth/.bin), zip or legacy: opcodes walked, never unpickled (`pickles`);
- a diffusers folder: `model_index.json` and component configs (`folders`).

`inspect_keys` (`rules`) is the pure classifier the readers feed.
"""
from __future__ import annotations

import logging
import os
import struct
import zipfile
from pathlib import Path

from ..errors import InputError
from .folders import inspect_folder
from .headers import (MAX_HEADER_BYTES, GGUFTruncated, display_name, open_binary, read_gguf,
                      read_safetensors_header, shapes_from_header, sniff)
from .pickles import MAX_PICKLE_BYTES, NotTorchZip, read_pickle_keys, unexpected_globals
from .result import FAMILY_NAMES, FORMATS, KIND_NAMES, Probe, unknown
from .rules import inspect_keys

__all__ = ["Probe", "inspect", "inspect_keys", "read_safetensors_header", "FAMILY_NAMES", "KIND_NAMES", "FORMATS",
           "MAX_HEADER_BYTES", "MAX_PICKLE_BYTES"]

log = logging.getLogger("colab_sd.probe")


def inspect(path) -> Probe:
    """What the model file (or diffusers folder) at `path` is; reads headers only.

    Raises InputError only when `path` does not exist or cannot be read; a readable file of unknown shape
    gives a Probe with kind None and reasons.
    """
    path = Path(path)
    if path.is_dir():
        return inspect_folder(path)
    name = display_name(path)
    if path.exists() and not path.is_file():  # a FIFO or device would block or stream forever
        return unknown("unknown", f"{name} is not a regular file")
    try:
        f = open_binary(path)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; check the path") from None
    except OSError as exc:
        raise InputError(f"{name} cannot be read ({exc.strerror or exc}); check the path and permissions") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(64)
        f.seek(0)
        if size == 0:
            return unknown("unknown", "the file is empty")
        if head[:4] == b"GGUF":
            try:
                shapes, kv = read_gguf(f, size)
            except GGUFTruncated as exc:
                return unknown("gguf", f"{name} is truncated: {exc}; download it again")
            except (ValueError, struct.error) as exc:
                return unknown("gguf", f"a GGUF file whose header cannot be read ({exc})")
            probe = inspect_keys(shapes, kv, format="gguf")
            arch = kv.get("general.architecture")
            return probe.with_reasons(after=(f"GGUF general.architecture = {arch!r}",) if arch else ())
        is_zip = head[:4] == b"PK\x03\x04"
        # A safetensors length whose low byte is 0x80 looks like a pickle's first byte: the JSON "{" decides.
        (length,) = struct.unpack("<Q", head[:8].ljust(8, b"\0"))
        looks_safetensors = head[8:9] == b"{" and 0 < length <= min(size - 8, MAX_HEADER_BYTES)
        if is_zip or (head[:1] == b"\x80" and not looks_safetensors):
            return _inspect_pickle(f, size, is_zip)
        try:
            header = read_safetensors_header(path)
        except InputError as exc:
            sniffed = sniff(head)
            return unknown("unknown", f"not a model file: it is {sniffed}" if sniffed else str(exc))
    shapes, metadata = shapes_from_header(header)
    probe = inspect_keys(shapes, metadata, format="safetensors")
    log.debug("probe %s: %s", name, probe.summary)
    return probe


def _inspect_pickle(f, size: int, is_zip: bool) -> Probe:
    try:
        scan = read_pickle_keys(f, size, is_zip)
    except NotTorchZip as exc:
        return unknown("unknown", f"a zip archive, not a torch model file ({exc})")
    except (ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile, struct.error) as exc:
        return unknown("pickle", f"a pickle whose keys cannot be read without loading it: {exc}")
    before = (f"{scan.how} with pickletools (nothing was unpickled)",)
    odd = unexpected_globals(scan.globals)
    if scan.too_complex:
        before += (f"warning: this pickle is too complex to inspect ({scan.too_complex}), so loading it could "
                   f"import anything; do not load it unless you trust its source",)
    elif odd:
        before += (f"warning: loading this pickle would import {', '.join(odd[:5])}, which a plain state dict "
                   f"never needs; do not load it unless you trust its source",)
    if scan.problem:
        return unknown("pickle", *before, scan.problem)
    return inspect_keys(scan.keys, None, format="pickle").with_reasons(before=before)
