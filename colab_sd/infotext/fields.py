"""A1111 keys (and ComfyUI / CivitAI settings) → the documented result dict with the request's field names.

Key meanings: A1111 modules/infotext_utils.py and ui.py paste fields; CivitAI's reader
(src/utils/metadata/automatic.metadata.ts) for `Civitai resources`, `Hashes` and the API's image `meta` keys.
"""
from __future__ import annotations

import json
import re
from typing import Optional

from ..library import without_extension
from .text import parse_hash_list

# A1111 key → (result field, type). Everything not here goes to `extra`.
KNOWN = {
    "Steps": ("steps", int), "Sampler": ("sampler", str), "Schedule type": ("schedule", str),
    "CFG scale": ("cfg", float), "Seed": ("seed", int), "Model": ("model", str), "Model hash": ("model_hash", str),
    "VAE": ("vae", str), "VAE hash": ("vae_hash", str), "Clip skip": ("clip_skip", int),
    "Denoising strength": ("denoising_strength", float), "Version": ("version", str),
    "Hires upscale": ("hires_scale", float), "Hires steps": ("hires_steps", int),
    "Hires upscaler": ("hires_upscaler", str), "Hires sampler": ("hires_sampler", str),
    "Hires schedule type": ("hires_schedule", str), "Hires CFG Scale": ("hires_cfg", float),
    "Hires checkpoint": ("hires_checkpoint", str), "Hires prompt": ("hires_prompt", str),
    "Hires negative prompt": ("hires_negative_prompt", str),
    # Forge, for distilled-guidance models (Flux dev): the guidance the model ran with; `CFG scale` is then 1
    "Distilled CFG Scale": ("distilled_cfg", float), "Hires Distilled CFG Scale": ("hires_distilled_cfg", float),
}
TAKEN = set(KNOWN) | {"Size", "Hires resize", "Lora hashes", "TI hashes", "Hashes", "Civitai resources"}
# Schedule labels an old infotext carries in the sampler name ("DPM++ 2M Karras"; A1111 sd_samplers.py).
SCHEDULE_LABELS = ("SGM Uniform", "Align Your Steps", "KL Optimal", "Polyexponential", "Exponential", "Karras",
                   "Uniform", "Simple", "Normal", "Beta")
_TAG = re.compile(r"<(lora|lyco):([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d{1,6})\s*x\s*(\d{1,6})\s*$")


def empty(source: str, where: str) -> dict:
    """The result shape with every field present (None / empty when the image does not say)."""
    result = {"source": source, "where": where, "text": None, "prompt": "", "negative_prompt": ""}
    result.update({field: None for field, _ in KNOWN.values()})
    result.update({"width": None, "height": None, "hires_resize_width": None, "hires_resize_height": None,
                   "loras": [], "embeddings": [], "civitai_resources": [], "hashes": {}, "parameters": {},
                   "extra": {}, "chunks": {}, "warnings": []})
    return result


def from_a1111(pairs: dict, result: dict) -> dict:
    """Fill `result` from `parse_parameters` output (prompt, negative_prompt, then the A1111 keys)."""
    result["prompt"], result["negative_prompt"] = pairs.get("prompt", ""), pairs.get("negative_prompt", "")
    params = {k: v for k, v in pairs.items() if k not in ("prompt", "negative_prompt")}
    result["parameters"] = params
    for key, value in params.items():
        if key in KNOWN:
            name, kind = KNOWN[key]
            result[name] = _convert(value, kind, key, result)
        elif key not in TAKEN:
            result["extra"][key] = value
    result["width"], result["height"] = _size(params.get("Size"), "Size", result)
    result["hires_resize_width"], result["hires_resize_height"] = _size(params.get("Hires resize"), "Hires resize",
                                                                        result)
    hashes = params.get("Hashes")
    result["hashes"] = dict(hashes) if isinstance(hashes, dict) else {}
    resources = params.get("Civitai resources")
    result["civitai_resources"] = [r for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []
    split_sampler(result)
    result["loras"] = loras_from(result["prompt"], params.get("Lora hashes"), result["hashes"])
    result["embeddings"] = [{"name": name, "hash": digest}
                            for name, digest in parse_hash_list(params.get("TI hashes")).items()]
    for key, digest in result["hashes"].items():  # CivitAI's extension: "embed:<name>" → AutoV2
        if str(key).startswith("embed:") and not any(e["name"] == key[6:] for e in result["embeddings"]):
            result["embeddings"].append({"name": key[6:], "hash": _hex(digest)})
    if not result["model_hash"] and result["hashes"].get("model"):
        result["model_hash"] = _hex(result["hashes"]["model"])
    return result


def loras_from(prompt: str, lora_hashes, hashes: dict) -> list[dict]:
    """[{name, weight, hash}] from `<lora:name:weight>` tags, `Lora hashes`, and CivitAI's `lora:<name>` hashes."""
    by_hash = parse_hash_list(lora_hashes)
    by_hash.update({str(k)[5:]: _hex(v) for k, v in (hashes or {}).items()
                    if str(k).startswith("lora:") and str(k)[5:] not in by_hash})
    out: list[dict] = []
    for match in _TAG.finditer(prompt or ""):
        name = match.group(2).strip()
        weight = _number(match.group(3), float)
        if any(item["name"] == name for item in out):
            continue
        out.append({"name": name, "weight": 1.0 if weight is None else weight, "hash": by_hash.get(name)})
    for name, digest in by_hash.items():
        if not any(item["name"] == name for item in out):
            out.append({"name": name, "weight": None, "hash": digest})
    return out


def split_sampler(result: dict) -> None:
    """`DPM++ 2M Karras` (before A1111 1.9 wrote `Schedule type`) → sampler `DPM++ 2M`, schedule `Karras`."""
    sampler = result.get("sampler")
    if not isinstance(sampler, str):
        return
    for label in SCHEDULE_LABELS:
        if sampler.lower().endswith(" " + label.lower()) and len(sampler) > len(label) + 1:
            result["sampler"] = sampler[: -len(label) - 1].strip()
            if not result.get("schedule"):
                result["schedule"] = label
            return


def from_comfy(settings: dict, result: dict) -> dict:
    """Fill `result` from `comfy.read_graph` output."""
    for key in ("prompt", "negative_prompt"):
        result[key] = settings.get(key) or ""
    for key, kind in (("seed", int), ("steps", int), ("cfg", float), ("width", int), ("height", int),
                      ("clip_skip", int)):
        result[key] = _convert(settings.get(key), kind, key, result) if settings.get(key) is not None else None
    for key in ("sampler", "schedule", "model", "vae"):
        value = settings.get(key)
        result[key] = value if isinstance(value, str) else None
    denoise = _number(settings.get("denoise"), float)
    if denoise is not None and denoise < 1.0:
        result["denoising_strength"] = denoise
    result["loras"] = [{"name": _stem(x["name"]), "weight": _number(x.get("weight"), float), "hash": None}
                       for x in settings.get("loras", [])]
    result["extra"].update(settings.get("extra", {}))
    return result


def from_civitai_meta(meta: dict, result: Optional[dict] = None) -> dict:
    """CivitAI's API image `meta` (GET /api/v1/images?withMeta=true) → the same result dict.

    Its keys are A1111's verbatim plus camelCase ones: prompt, negativePrompt, seed, steps, sampler, cfgScale,
    clipSkip, hashes {model, "lora:<name>"}, resources [{name, type, weight, hash}], civitaiResources
    [{type, weight, modelVersionId}]. A nested {id, meta: {...}} is unwrapped. Unknown keys go to `extra`.
    """
    if isinstance(meta.get("meta"), dict):
        meta = meta["meta"]
    result = result or empty("civitai", "api:meta")
    renamed = {"negativePrompt": "negative_prompt", "cfgScale": "CFG scale", "clipSkip": "Clip skip",
               "seed": "Seed", "steps": "Steps", "sampler": "Sampler", "civitaiResources": "Civitai resources",
               "hashes": "Hashes"}
    pairs: dict = {"prompt": meta.get("prompt") or "", "negative_prompt": meta.get("negativePrompt") or ""}
    for key, value in meta.items():
        if key in ("prompt", "negativePrompt") or value is None:
            continue
        pairs[renamed.get(key, key)] = value
    from_a1111(pairs, result)
    for item in meta.get("resources") or []:
        if isinstance(item, dict) and item.get("type") == "lora" and item.get("name"):
            if not any(x["name"] == item["name"] for x in result["loras"]):
                result["loras"].append({"name": item["name"], "weight": _number(item.get("weight"), float),
                                        "hash": _hex(item.get("hash"))})
        elif isinstance(item, dict) and item.get("type") == "model" and not result["model_hash"]:
            result["model_hash"] = _hex(item.get("hash"))
            result["model"] = result["model"] or item.get("name")
    return result


def _convert(value, kind, key: str, result: dict):
    if value is None:
        return None
    number = _number(value, kind) if kind in (int, float) else None
    if kind is str:
        return value if isinstance(value, str) else json.dumps(value)
    if number is None:
        result["warnings"].append(f"{key}: {value!r} is not a number; ignored")
    return number


def _number(value, kind):
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if kind is int:
        return int(number) if number == int(number) else None
    return number


def _size(value, key: str, result: dict) -> tuple[Optional[int], Optional[int]]:
    if value is None:
        return None, None
    match = _SIZE.match(str(value))
    if match is None:
        result["warnings"].append(f"{key}: {value!r} is not WIDTHxHEIGHT; ignored")
        return None, None
    return int(match.group(1)), int(match.group(2))


def _hex(value) -> Optional[str]:
    """A hash as lower-case hex (CivitAI's API writes upper case, sometimes with 0x)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    return text[2:] if text.startswith("0x") else text


def _stem(name: str) -> str:
    """A ComfyUI file name (`sub/detail.safetensors`) as A1111 would name it (`detail`)."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    return without_extension(base)
