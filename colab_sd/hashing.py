"""The one helper that hashes a file on disk: sha256 over its bytes, read in 1 MiB blocks.

The byte mover uses it to check a finished file and to re-hash the bytes a resumed `.part` already holds;
the library, the sources and the infotext writer use it for files without a known sha256. (A1111's short
hashes, AutoV1/AutoV2 and the LoRA "addnet" hash, are built on top of it in `generation.metadata`.)
"""
from __future__ import annotations

import hashlib
import os
from typing import Optional


def file_sha256(path: os.PathLike | str, limit: Optional[int] = None, chunk: int = 1 << 20) -> "hashlib._Hash":
    """A sha256 object fed with the first `limit` bytes of `path` (all of it when None); `.hexdigest()` for hex.

    Raises OSError when the file cannot be read.
    """
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            data = fh.read(chunk if remaining is None else min(chunk, remaining))
            if not data:
                break
            digest.update(data)
            if remaining is not None:
                remaining -= len(data)
    return digest
