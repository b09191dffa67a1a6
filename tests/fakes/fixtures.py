"""Hash helpers the source tests share (the fixtures themselves are in tests/conftest.py)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
