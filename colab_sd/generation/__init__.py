"""Image generation with diffusers: SD1.x, SD2.x and SDXL checkpoints, LoRAs, VAEs, embeddings, A1111 samplers.

Light to import (no torch, no diffusers): the request, the sampler lists and the metadata helpers are plain
Python; `generate` imports torch and diffusers on its first call.

    from colab_sd.generation import generate, SAMPLERS
    result = generate(model="dreamshaper_8", prompt="a cat <lora:film:0.8>", sampler="DPM++ 2M", seed=-1)
    result.images[0], result.paths[0], result.seed
"""
from __future__ import annotations

from .metadata import build_parameters, parse_parameters, read_png_parameters
from .prompt import LoraSpec, extract_loras
from .request import GenerationRequest
from .samplers import DEFAULT_SAMPLER, DEFAULT_SCHEDULE, SAMPLERS, SCHEDULES, schedules_for

__all__ = ["generate", "GenerationRequest", "GenerationResult", "LoraSpec", "SAMPLERS", "SCHEDULES",
           "DEFAULT_SAMPLER", "DEFAULT_SCHEDULE", "schedules_for", "trigger_words", "load_count", "release",
           "loaded_model", "parse_parameters", "build_parameters", "read_png_parameters", "extract_loras",
           "native_size"]


def generate(request=None, **fields):
    """Generate images; takes a GenerationRequest and/or its fields as keywords. Returns a GenerationResult."""
    from .engine import generate as _generate

    return _generate(request, **fields)


def trigger_words(lora: str, models_dir=None) -> list[str]:
    """Trigger words from a LoRA's sidecar (what CivitAI lists as trained words)."""
    from .models import trigger_words as _trigger_words

    return _trigger_words(lora, models_dir)


def native_size(model, models_dir=None) -> int:
    """The side a model was trained at (512 SD1, 768 SD2-v, 1024 SDXL), from its header; no loading."""
    from .models import resolve_model

    return resolve_model(model, models_dir).native_size


def load_count() -> int:
    """How many real model loads happened in this process (cache hits are not counted)."""
    from .engine import load_count as _load_count

    return _load_count()


def release() -> None:
    """Unload the current model and free its RAM and VRAM."""
    from .engine import release as _release

    _release()


def loaded_model():
    """The name of the model now loaded, or None."""
    from .engine import loaded_model as _loaded_model

    return _loaded_model()


def __getattr__(name):
    if name == "GenerationResult":
        from .engine import GenerationResult

        return GenerationResult
    raise AttributeError(name)
