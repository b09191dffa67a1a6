"""generate(): a request in, PIL images and PNG files (with A1111 metadata) out, step events on the way."""
from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .._version import __version__
from ..errors import GenerationError, InputError
from ..events import Completed, Info, StepProgress, guard
from . import metadata
from .cache import CACHE, free_memory
from .loader import clip_skip_compat, is_oom, pick_device, pick_dtype
from .models import FAMILY_LABEL, embedding_names, resolve_addon, resolve_model
from .prompt import LoraSpec, extract_loras, has_attention_weights, merge_loras, words
from .request import GenerationRequest
from .samplers import make_scheduler, resolve_sampler

log = logging.getLogger("colab_sd.generation")


@dataclass
class GenerationResult:
    """What a generate() call made. `paths` is empty when saving was off; `seeds[i]` made `images[i]`."""

    images: list
    paths: list[Path]
    seeds: list[int]
    parameters: list[str]  # the A1111 text of each image
    model: str
    family: str
    request: GenerationRequest  # the validated request, with the seed resolved and the size filled in
    loaded: bool = False  # True when this call had to load the model
    seconds: float = 0.0
    cancelled: bool = False
    info: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.seeds[0] if self.seeds else self.request.seed


class _Steps:
    """callback_on_step_end: StepProgress events, a preview every N steps, and cancellation."""

    def __init__(self, emit: Callable, job: str, image: int, family: str, preview_every: int, cancel):
        self.emit, self.job, self.image, self.family = emit, job, image, family
        self.preview_every, self.cancel = preview_every, cancel
        self.started = time.monotonic()
        self.cancelled = False

    def __call__(self, pipe, step: int, timestep, tensors: dict) -> dict:
        done = step + 1
        total = int(getattr(pipe, "num_timesteps", 0) or done)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        preview = None
        if self.preview_every and (done % self.preview_every == 0 or done == total) and "latents" in tensors:
            from .preview import latents_to_image

            try:
                preview = latents_to_image(tensors["latents"], self.family)
            except Exception:  # a preview is a nicety; never let it stop the image
                log.debug("preview failed", exc_info=True)
        self.emit(StepProgress(step=done, total=total, rate=round(rate, 3), eta=round((total - done) / rate, 2),
                               image=self.image, preview=preview, job=self.job))
        if self.cancel is not None and self.cancel.is_set():
            pipe._interrupt = True
            self.cancelled = True
        return tensors


def _load_init_image(value, width: Optional[int], height: Optional[int]):
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (str, os.PathLike)):
        try:
            with Image.open(value) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError):
            raise InputError(f"init image {value} is not an image PIL can read (PNG, JPEG, WebP…)") from None
    elif hasattr(value, "convert"):
        image = value.convert("RGB")
    else:
        raise InputError(f"init image must be a file path or a PIL image, not {type(value).__name__}")
    w = width or max(64, image.width // 8 * 8)
    h = height or max(64, image.height // 8 * 8)
    if image.size != (w, h):
        image = image.resize((w, h), Image.LANCZOS)
    return image


def generate(request: Optional[GenerationRequest] = None, **fields) -> GenerationResult:
    """Generate images for a request (or for keyword fields); see `GenerationRequest` for every field.

    Emits Info, StepProgress (status "progress") and Completed (one per saved PNG) to `on_event`.
    Raises InputError / NotFoundError for bad input (before any model is loaded) and GenerationError when the
    run fails (out of memory included, with what to try); the loaded model stays usable after either.
    """
    req = GenerationRequest.from_fields(request, **fields).validate()
    emit = guard(req.on_event)
    started = time.monotonic()

    # Everything that can be checked without torch first, so that bad input fails fast.
    prompt, prompt_loras = extract_loras(req.prompt)
    negative, negative_loras = extract_loras(req.negative_prompt)
    loras = merge_loras(req.loras, prompt_loras, negative_loras)
    sampler, schedule = resolve_sampler(req.sampler, req.schedule)
    hf_token = req.tokens.get("huggingface") if req.tokens is not None else None
    ref = resolve_model(req.model, req.models_dir, prediction=req.prediction,
                        hf_token=hf_token.secret.reveal() if hf_token else None)
    lora_addons = [(resolve_addon("lora", spec.name, req.models_dir), spec.weight) for spec in loras]
    vae_addon = resolve_addon("vae", req.vae, req.models_dir) if req.vae else None
    known = embedding_names(req.models_dir)
    mentioned = [name for name in sorted(words(prompt + " " + negative)) if name in known]
    embedding_addons = [resolve_addon("embedding", name, req.models_dir)
                        for name in dict.fromkeys(list(req.embeddings) + mentioned)]
    init_image = _load_init_image(req.init_image, req.width, req.height) if req.init_image is not None else None
    width = init_image.width if init_image is not None else (req.width or ref.native_size)
    height = init_image.height if init_image is not None else (req.height or ref.native_size)
    seed = req.seed if req.seed >= 0 else secrets.randbelow(2**32)
    req = req.replace(seed=seed, width=width, height=height)
    emit(Info(f"seed {seed}", job=ref.name))

    import torch

    device = pick_device(req.device)
    dtype = pick_dtype(req.dtype, device)
    images, paths, seeds, texts = [], [], [], []
    cancelled = False
    in_pipeline = 0.0  # seconds inside diffusers' pipeline calls (the rest is colab_sd's own work)
    with CACHE.lock:
        try:
            entry, loaded = CACHE.get(ref, device, dtype, req.config, emit)
            entry.place(req.low_vram, req.vae_tiling)
        except Exception as err:
            if not is_oom(err):
                raise
            CACHE.release()
            raise GenerationError(
                f"out of {'GPU ' if device.startswith('cuda') else ''}memory loading {ref.name} "
                f"({FAMILY_LABEL[ref.family]}): use low_vram=True (model CPU offload), or a GPU runtime with more "
                f"memory") from None
        entry.apply_vae(vae_addon)
        entry.apply_loras(lora_addons, emit)
        used_embeddings = entry.apply_embeddings(embedding_addons, emit, set(req.embeddings))
        for note in _prompt_notes(entry.pipe, prompt, negative):
            emit(Info(note, job=ref.name))
        pipe = entry.img2img() if init_image is not None else entry.pipe
        pipe.scheduler = make_scheduler(sampler, schedule, entry.scheduler_config)
        base_params = _parameters(req, ref, sampler.name, schedule, lora_addons, vae_addon, used_embeddings,
                                  img2img=init_image is not None)
        shown_prompt = _prompt_with_tags(req.prompt, req.loras)
        for batch in range(req.batch_count):
            batch_seeds = [(seed + batch * req.batch_size + i) % (2**64) for i in range(req.batch_size)]
            generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
            steps = _Steps(emit, ref.name, batch, ref.family, req.preview_every, req.cancel)
            call = dict(prompt=prompt, negative_prompt=negative or None, num_inference_steps=req.steps,
                        guidance_scale=req.cfg, num_images_per_prompt=req.batch_size, generator=generators,
                        callback_on_step_end=steps, callback_on_step_end_tensor_inputs=["latents"],
                        clip_skip=(req.clip_skip - 1) or None, output_type="pil")
            if init_image is not None:
                call.update(image=init_image, strength=req.strength)
            else:
                call.update(width=width, height=height)
            out_of_memory = False
            try:
                call_started = time.perf_counter()
                with torch.inference_mode(), clip_skip_compat(pipe, req.clip_skip > 1):
                    output = pipe(**call)
                in_pipeline += time.perf_counter() - call_started
            except Exception as err:
                if not is_oom(err):
                    raise
                out_of_memory = True  # handled below, once the traceback (and the tensors it holds) is gone
            finally:
                pipe._interrupt = False
            if out_of_memory:
                free_memory()
                raise GenerationError(
                    f"out of {'GPU ' if device.startswith('cuda') else ''}memory at {width}x{height}, batch size "
                    f"{req.batch_size}: try a smaller size or batch size, or low_vram=True (CPU offload + VAE "
                    f"tiling)")
            if steps.cancelled:
                cancelled = True
                emit(Info("cancelled: the unfinished images were not saved", job=ref.name))
                break
            for image, image_seed in zip(output.images, batch_seeds):
                text = metadata.build_parameters(shown_prompt, req.negative_prompt,
                                                 {**base_params, "Seed": image_seed})
                image.info["parameters"] = text
                images.append(image)
                seeds.append(image_seed)
                texts.append(text)
                if req.save:
                    path = metadata.output_path(metadata.outputs_root(req.outputs_dir), image_seed)
                    metadata.save_png(image, path, text)
                    paths.append(path)
                    emit(Completed(path=str(path), bytes=path.stat().st_size, sha256=None, job=ref.name))
    return GenerationResult(images=images, paths=paths, seeds=seeds, parameters=texts, model=ref.name,
                            family=ref.family, request=req, loaded=loaded, seconds=time.monotonic() - started,
                            cancelled=cancelled, info={"prediction": ref.prediction, "sampler": sampler.name,
                                                       "schedule": schedule, "device": device, "dtype": str(dtype),
                                                       "pipeline_seconds": in_pipeline})


def _prompt_notes(pipe, prompt: str, negative: str) -> list[str]:
    """What the model will not see as the user meant it: text past CLIP's 77 tokens, A1111 emphasis syntax."""
    notes = []
    tokenizer = pipe.tokenizer
    limit = tokenizer.model_max_length - 2  # start and end tokens
    for label, text in (("prompt", prompt), ("negative prompt", negative)):
        if not text:
            continue
        if hasattr(pipe, "maybe_convert_prompt"):
            text = pipe.maybe_convert_prompt(text, tokenizer)  # multi-vector embeddings count as their vectors
        count = len(tokenizer(text, add_special_tokens=False).input_ids)
        if count > limit:
            notes.append(f"the {label} is {count} tokens; the model reads the first {limit} (long prompts are "
                         f"cut, not chunked as in A1111): put what matters first")
    if has_attention_weights(prompt) or has_attention_weights(negative):
        notes.append("(word:1.2) emphasis is A1111 syntax; here it is read as plain text")
    return notes


def _prompt_with_tags(prompt: str, loras: list[LoraSpec]) -> str:
    """The prompt as recorded: LoRAs given as options are written as tags too, so the PNG re-runs as it was."""
    present = {spec.name for spec in extract_loras(prompt)[1]}
    tags = [f"<lora:{spec.name}:{spec.weight:g}>" for spec in loras if spec.name not in present]
    return " ".join([prompt] + tags) if tags else prompt


def _parameters(req: GenerationRequest, ref, sampler: str, schedule: str, loras, vae, embeddings,
                img2img: bool) -> dict:
    lora_hashes = metadata.hash_list((addon.name, metadata.autov2(addon.path)) for addon, _ in loras)
    ti_hashes = metadata.hash_list((addon.name, metadata.autov2(addon.path)) for addon in embeddings)
    return {
        "Steps": req.steps,
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": req.cfg,
        "Seed": req.seed,
        "Size": f"{req.width}x{req.height}",
        "Model hash": metadata.autov2(ref.path),
        "Model": ref.name,
        "VAE hash": metadata.autov2(vae.path) if vae else None,
        "VAE": vae.path.name if vae else None,
        "Denoising strength": req.strength if img2img else None,
        "Clip skip": req.clip_skip if req.clip_skip > 1 else None,
        "Lora hashes": lora_hashes,
        "TI hashes": ti_hashes,
        "Batch size": req.batch_size if req.batch_size > 1 else None,
        "Version": f"colab_sd {__version__}",
    }


def load_count() -> int:
    """How many times a model was really loaded in this process (cache hits do not count)."""
    return CACHE.loads


def release() -> None:
    """Unload the current model and free its memory."""
    CACHE.release()


def loaded_model() -> Optional[str]:
    entry = CACHE.entry
    return entry.ref.name if entry else None
