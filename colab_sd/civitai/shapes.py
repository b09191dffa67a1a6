"""CivitAI's answers made the shape the rest of colab_sd reads: the reference says to read every field
defensively (civitai-api.md: docs and code drift, fields come and go), so it is done once, here, as answers arrive.

A version: `model`, every `files[]` entry with its `metadata` and `hashes`, and every `images[]` entry are
objects (entries that are not are dropped), `trainedWords` holds only non-empty strings. A model: the same for
each of its `modelVersions`. Unknown fields pass through untouched.
"""
from __future__ import annotations

from typing import Any, Mapping


def _obj(value: Any) -> dict:
    return dict(value) if isinstance(value, Mapping) else {}


def _objs(value: Any) -> list:
    return [dict(v) for v in value if isinstance(v, Mapping)] if isinstance(value, (list, tuple)) else []


def file(raw: Any) -> dict:
    f = _obj(raw)
    f["metadata"] = _obj(f.get("metadata"))
    f["hashes"] = {k: v for k, v in _obj(f.get("hashes")).items() if isinstance(v, str)}
    for key in ("name", "type"):
        if f.get(key) is not None and not isinstance(f[key], str):
            f[key] = str(f[key])
    return f


def version(raw: Any) -> dict:
    v = _obj(raw)
    if "model" in v:
        v["model"] = _obj(v.get("model"))
    v["files"] = [file(f) for f in _objs(v.get("files"))]
    v["images"] = _objs(v.get("images"))
    words = v.get("trainedWords")
    v["trainedWords"] = [w for w in words if isinstance(w, str) and w.strip()] if isinstance(words, list) else []
    return v


def model(raw: Any) -> dict:
    m = _obj(raw)
    m["modelVersions"] = [version(v) for v in _objs(m.get("modelVersions"))]
    return m
