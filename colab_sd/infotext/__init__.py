"""Generation settings in image files: A1111 infotext written and read here, CivitAI and ComfyUI read too.

No torch, no diffusers; Pillow only for JPEG/WebP/AVIF/GIF (PNG is read without it).

    read_parameters("00001.png")          # a path, bytes, a binary file object or a PIL image
    {"source": "a1111", "where": "png:parameters", "text": "a cat\\nNegative prompt: …\\nSteps: 20, …",
     "prompt": "a cat <lora:film:0.8>", "negative_prompt": "blurry",
     "steps": 20, "sampler": "DPM++ 2M", "schedule": "Karras", "cfg": 7.0, "seed": 1234,
     "width": 512, "height": 768, "clip_skip": 2, "model": "dreamshaper_8", "model_hash": "6ce0161689",
     "vae": None, "vae_hash": None, "denoising_strength": 0.45, "version": "v1.10.1",
     "loras": [{"name": "film", "weight": 0.8, "hash": "0123456789ab"}],
     "embeddings": [{"name": "easynegative", "hash": "c74b4e810b03"}],
     "hires_scale": 2.0, "hires_steps": 10, "hires_upscaler": "Latent", "hires_resize_width": None,
     "hires_resize_height": None, "hires_sampler": None, "hires_schedule": None, "hires_cfg": None,
     "hires_checkpoint": None, "hires_prompt": None, "hires_negative_prompt": None,
     "civitai_resources": [{"type": "checkpoint", "modelVersionId": 128713}],  # CivitAI's own list, as written
     "hashes": {"model": "6ce0161689"},      # CivitAI's `Hashes: {…}`, as written
     "parameters": {"Steps": "20", "Sampler": "DPM++ 2M", …},   # every A1111 pair as written, in order
     "extra": {"ENSD": "31337"},             # keys none of the fields above took: never dropped
     "chunks": {"Software": "…"},           # the file's other text chunks
     "warnings": []}                         # what was skipped (an oversized chunk, a value that is not a number)

`source` is "a1111", "colab_sd", "civitai" (CivitAI's resources/hashes present, or `from_civitai_meta`) or
"comfyui"; `where` says which chunk or tag held it: "png:parameters", "exif:UserComment", "comment",
"png:prompt", "png:workflow" ("webp:prompt" for ComfyUI's WebP EXIF tags). Numbers are numbers; a field the image
does not give is None. LoRA weights are the `<lora:name:w>` tag's (None for a LoRA only named in `Lora hashes`).
Hashes are hex as written (those from CivitAI's `Hashes` lower-cased, `0x` dropped): `Model hash` AutoV2 (10 hex of
the file's sha256, or 8-hex AutoV1 in old files), `Lora hashes` AutoV3 (12 hex of the safetensors "addnet" hash) in
A1111, AutoV2 in CivitAI's `Hashes`.
"""
from __future__ import annotations

from ..errors import InputError
from . import comfy, fields
from .fields import from_civitai_meta
from .files import RawMetadata, read_raw
from .text import build_parameters, format_value, hash_list, parse_hash_list, parse_parameters, quote, split_pairs

__all__ = ["read_parameters", "from_text", "from_civitai_meta", "build_parameters", "parse_parameters",
           "parse_hash_list", "hash_list", "quote", "format_value", "split_pairs"]


def read_parameters(source) -> dict:
    """The generation settings stored in an image (see the module docstring for the dict).

    `source`: a file path, bytes, a binary file object, or a PIL image. Raises InputError (one line) when it is
    not an image, cannot be read, or carries no settings. Never reads more than a text chunk's worth at a time.
    """
    raw = read_raw(source)
    result = interpret(raw)
    if result is None:
        skipped = f" ({'; '.join(raw.warnings)})" if raw.warnings else ""
        raise InputError(f"{raw.name} carries no generation settings: no A1111 'parameters' text, EXIF "
                         f"UserComment or ComfyUI graph{skipped}; CivitAI's preview images have none, the "
                         f"original upload usually does")
    return result


def from_text(text: str, where: str = "text") -> dict:
    """The result dict for an A1111 infotext given as text (pasted, or from an API)."""
    result = fields.empty("a1111", where)
    result["text"] = text
    fields.from_a1111(parse_parameters(text), result)
    result["source"] = _flavour(result)
    return result


def interpret(raw: RawMetadata):
    """The result dict for what `read_raw` found, or None when there is nothing to read."""
    texts, kind = dict(raw.texts), (raw.format or "image").lower()
    text, where = texts.pop("parameters", None), f"{kind}:parameters"
    if not (text or "").strip() and raw.user_comment and raw.user_comment.strip():
        text, where = raw.user_comment, "exif:UserComment"
    if not (text or "").strip() and "Steps: " in texts.get("comment", ""):  # GIF: A1111 writes the comment
        text, where = texts.pop("comment"), "comment"
    has_text = bool((text or "").strip())
    result = from_text(text, where) if has_text and not text.lstrip().startswith("{") else _comfy(texts, text, kind)
    if result is None and has_text:  # JSON that is no ComfyUI graph (Fooocus, NovelAI): kept as the prompt text
        result = from_text(text, where)
    if result is None:
        return None
    result["chunks"] = texts
    result["warnings"] = list(raw.warnings) + result["warnings"]
    return result


def _comfy(texts: dict, exif_text, kind: str):
    """ComfyUI: the API graph (`prompt` chunk) first, the UI graph (`workflow`) when that is all there is."""
    candidates = [(f"{kind}:prompt", texts.get("prompt"), False), (f"{kind}:workflow", texts.get("workflow"), True)]
    if exif_text:  # ComfyUI-style JSON stored in EXIF by some savers
        candidates.append(("exif:UserComment", exif_text, False))
    for where, chunk, is_workflow in candidates:
        graph = comfy.parse_graph(chunk) if chunk else None
        if graph is None:
            continue
        if isinstance(graph.get("prompt"), dict):  # {"prompt": {...}, "workflow": {...}} in one text
            graph = graph["prompt"]
        settings = comfy.read_graph(comfy.workflow_to_api(graph) if is_workflow or "nodes" in graph else graph)
        if settings is not None:  # the graphs stay in `chunks`: nothing read is dropped
            return fields.from_comfy(settings, fields.empty("comfyui", where))
    return None


def _flavour(result: dict) -> str:
    if str(result.get("version") or "").startswith("colab_sd"):
        return "colab_sd"
    if result["civitai_resources"] or result["hashes"] or "Civitai metadata" in result["parameters"]:
        return "civitai"
    return "a1111"
