"""generate(): a request in, PIL images and PNG files (with A1111 metadata) out, step events on the way.

The steps, in order: `_plan` (everything checkable without torch: prompt syntax, model and add-ons found, seed),
`_load` (the cached pipeline, placed), `_prepare` (add-ons applied, scheduler, A1111-style conditioning),
then `_run_batch` per batch (the diffusers call) and `_keep` (infotext, PNG files).
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .._version import __version__
from ..errors import GenerationError, InputError
from ..events import Completed, Info, StepProgress, guard
from . import metadata, passes
from .cache import CACHE, check_lora, free_memory
from .families import run as family_run
from .loader import hush_torchvision_notice, is_oom, pick_device, pick_dtype
from .models import FAMILY_LABEL, ModelRef, embedding_names, resolve_addon, resolve_model
from .prompt import LoraSpec, extract_loras, merge_loras, words
from .prompt_parser import check_prompt, split_and
from .request import GenerationRequest
from .samplers import make_scheduler, resolve_sampler, total_steps

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


@dataclass
class _Job:
    """What `_plan` worked out before torch is imported, and what the run collects."""

    req: GenerationRequest
    ref: ModelRef
    sampler: Any
    schedule: str
    prompt: str  # LoRA tags removed; A1111 syntax still in it
    negative: str
    cfg: float  # the CFG scale times the prompt's composable-diffusion weight (`a cat :0.8`)
    loras: list
    vae: Any
    embeddings: list
    init_image: Any
    emit: Callable
    images: list = field(default_factory=list)
    paths: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    cancelled: bool = False
    second: Any = None  # passes.SecondPass: hires fix, inpaint mask, resize mode
    entry: Any = None  # the cache entry the passes run on
    pipeline_seconds: float = 0.0  # inside diffusers' pipeline calls (the rest is colab_sd's own work)


class _Steps:
    """callback_on_step_end: conditioning switches (prompt editing), StepProgress events, a preview every N steps,
    and cancellation."""

    def __init__(self, emit: Callable, job: str, image: int, family: str, preview_every: int, cancel,
                 switch=None):
        self.emit, self.job, self.image, self.family = emit, job, image, family
        self.preview_every, self.cancel, self.switch = preview_every, cancel, switch
        self.started = time.monotonic()
        self.cancelled = False
        self.previewer = None  # (pipe, latents, (width, height)) → PIL, for the transformer families
        self.size = (0, 0)  # the running pass's size (the hires pass sets its own)

    def __call__(self, pipe, step: int, timestep, tensors: dict) -> dict:
        done = step + 1
        total = int(getattr(pipe, "num_timesteps", 0) or done)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        preview = None
        if self.preview_every and (done % self.preview_every == 0 or done == total) and "latents" in tensors:
            from .preview import latents_to_image

            try:
                preview = (self.previewer(pipe, tensors["latents"], self.size) if self.previewer is not None
                           else latents_to_image(tensors["latents"], self.family))
            except Exception:  # a preview is a nicety; never let it stop the image
                log.debug("preview failed", exc_info=True)
        self.emit(StepProgress(step=done, total=total, rate=round(rate, 3), eta=round((total - done) / rate, 2),
                               image=self.image, preview=preview, job=self.job))
        if self.cancel is not None and self.cancel.is_set():
            pipe._interrupt = True
            self.cancelled = True
        if self.switch is not None:
            tensors = self.switch(pipe, step, tensors)
        return tensors


def generate(request: Optional[GenerationRequest] = None, **fields) -> GenerationResult:
    """Generate images for a request (or for keyword fields); see `GenerationRequest` for every field.

    Emits Info, StepProgress (status "progress") and Completed (one per saved PNG) to `on_event`.
    Raises InputError / NotFoundError for bad input (before any model is loaded) and GenerationError when the
    run fails (out of memory included, with what to try); the loaded model stays usable after either.
    """
    req = GenerationRequest.from_fields(request, **fields).validate()
    started = time.monotonic()
    hush_torchvision_notice()
    job = _plan(req, guard(req.on_event))
    device = pick_device(job.req.device)
    dtype = pick_dtype(job.req.dtype, device)
    with CACHE.lock:
        entry, loaded = _load(job, device, dtype)
        pipe, call = _prepare(job, entry)
        base_params = _parameters(job)
        for batch in range(job.req.batch_count):
            if not _run_batch(job, pipe, call, batch, base_params, device):
                break
    return GenerationResult(images=job.images, paths=job.paths, seeds=job.seeds, parameters=job.texts,
                            model=job.ref.name, family=job.ref.family, request=job.req, loaded=loaded,
                            seconds=time.monotonic() - started, cancelled=job.cancelled,
                            info={"prediction": job.ref.prediction, "sampler": job.sampler.name,
                                  "schedule": job.schedule, "device": device, "dtype": str(dtype),
                                  "pipeline_seconds": job.pipeline_seconds})


def _plan(req: GenerationRequest, emit: Callable) -> _Job:
    """Everything that can be checked without torch, so that bad input fails before a model loads."""
    prompt, prompt_loras = extract_loras(req.prompt)
    negative = req.negative_prompt  # A1111 never activates tags in a negative prompt: they stay text
    prompt, weight = _composable(prompt, 1.0)
    sampler, schedule = resolve_sampler(req.sampler, req.schedule, pair=False)  # the pair: once the family is known
    steps = total_steps(sampler, req.steps or family_run.FALLBACK_STEPS)
    check_prompt(prompt, steps)
    check_prompt(negative, steps)
    loras = merge_loras(req.loras, prompt_loras)
    hf_token = req.tokens.get("huggingface") if req.tokens is not None else None
    ref = resolve_model(req.model, req.models_dir, prediction=req.prediction,
                        hf_token=hf_token.secret.reveal() if hf_token else None)
    req = family_run.defaults(ref, req)  # unset steps / CFG: the model family's defaults
    cfg = req.cfg * weight
    fam = family_run.family_of(ref)
    if not fam.is_transformer:  # the A1111 sampler runs: it must follow the schedule (a family's scheduler is its own)
        sampler, schedule = resolve_sampler(req.sampler, req.schedule)
    refused = family_run.refuse_img2img(fam, req)  # inpaint on a transformer family, img2img it has not got
    if refused:
        raise InputError(refused)
    lora_addons = [(resolve_addon("lora", spec.name, req.models_dir), spec.weight) for spec in loras]
    for addon, _ in lora_addons:
        check_lora(addon, ref)
    vae_addon = resolve_addon("vae", req.vae, req.models_dir) if req.vae else None
    known = embedding_names(req.models_dir)
    mentioned = [name for name in sorted(words(prompt + " " + negative)) if name in known]
    embedding_addons = [resolve_addon("embedding", name, req.models_dir)
                        for name in dict.fromkeys(list(req.embeddings) + mentioned)]
    multiple = 16 if fam.is_transformer else 8  # 8 px latents, in 2×2 patches for the transformers
    init_image = passes.load_init_image(req, multiple) if req.init_image is not None else None
    if init_image is not None:  # the processing size (a family's resize mode 3: the size its latents go to)
        width, height = (fam.is_transformer and init_image.info.get("target_size")) or init_image.size
    else:
        width, height = req.width or ref.native_size, req.height or ref.native_size
    seed = req.seed if req.seed >= 0 else secrets.randbelow(2**32)
    req = req.replace(seed=seed, width=width, height=height)
    second = passes.plan(req, ref, init_image, width, height, emit, transformer=fam.is_transformer)
    emit(Info(f"seed {seed}", job=ref.name))
    return _Job(req=req, ref=ref, sampler=sampler, schedule=schedule, prompt=prompt, negative=negative, cfg=cfg,
                loras=lora_addons, vae=vae_addon, embeddings=embedding_addons, init_image=init_image, emit=emit,
                second=second)


def _composable(prompt: str, cfg: float) -> tuple[str, float]:
    """A1111 splits a positive prompt on AND (composable diffusion). One part's trailing `:w` scales its guidance,
    which is exactly the CFG scale times w; several parts need a denoising loop diffusers has not got."""
    parts = split_and(prompt)
    if len(parts) > 1:
        raise InputError("AND in a prompt is A1111's composable diffusion, which colab_sd does not do: write the "
                         "parts as one prompt, or spell the word in lower case (\"and\") if it is just a word")
    text, weight = parts[0]
    return text, cfg * weight  # as A1111, the text without its `:w` (and trailing spaces), even when w is 1


def _load(job: _Job, device: str, dtype):
    """(cache entry, loaded now) with the model placed; out of memory says what to try."""
    req, ref = job.req, job.ref
    plan = family_run.plan(ref, req, device, req.models_dir)  # transformer families: refused here if too big
    low_vram = req.low_vram
    if plan is not None:
        job.emit(Info(f"memory plan: {plan.line}", job=ref.name))
        ref = job.ref = dataclasses.replace(ref, plan=plan, models_dir=req.models_dir)
        dtype = family_run.torch_dtype(plan.dtype) if not req.dtype else dtype
        low_vram = low_vram or plan.placement in ("model_offload", "sequential_offload")
    try:
        entry, loaded = CACHE.get(ref, device, dtype, req.config, job.emit)
        entry.place(low_vram, req.vae_tiling, sequential=plan is not None and plan.placement == "sequential_offload")
    except Exception as err:
        if not is_oom(err):
            raise
        CACHE.release()
        raise GenerationError(
            f"out of {'GPU ' if device.startswith('cuda') else ''}memory loading {ref.name} "
            f"({FAMILY_LABEL[ref.family]}): use low_vram=True (model CPU offload), or a GPU runtime with more "
            f"memory") from None
    return entry, loaded


def _prepare(job: _Job, entry) -> tuple[Any, dict]:
    """Add-ons applied, the scheduler set and the prompts encoded: (pipeline, the call's fixed arguments)."""
    from .conditioning import ScheduleSwitch

    req = job.req
    entry.apply_vae(job.vae)
    entry.apply_loras(job.loras, job.emit)
    fam = family_run.family_of(job.ref)
    if fam.is_transformer:  # prompt strings and the family's own flow-matching scheduler
        for note in family_run.notes(fam, req, job.negative):
            job.emit(Info(note, job=job.ref.name))
        job.embeddings, job.entry = [], entry
        pipe = entry.img2img() if job.init_image is not None else entry.pipe  # from_pipe: the same modules
        call = family_run.call_kwargs(fam, pipe, job.prompt, job.negative, req, job.cfg)
        if job.init_image is not None:
            call["image"] = job.init_image  # strength and the step count: families/second.py (as A1111 counts)
        return pipe, {**call, "switch": None}
    job.embeddings = entry.apply_embeddings(job.embeddings, job.emit, set(req.embeddings))
    job.entry = entry
    pipe = passes.pipeline(job, entry)
    pipe.scheduler = make_scheduler(job.sampler, job.schedule, entry.scheduler_config)
    positive, negative = _encode(job, pipe)
    sdxl = job.ref.family == "sdxl"
    call = dict(prompt_embeds=positive.embeds[0], negative_prompt_embeds=negative.embeds[0],
                num_inference_steps=req.steps, guidance_scale=job.cfg, num_images_per_prompt=req.batch_size,
                output_type="pil")
    if sdxl:
        call.update(pooled_prompt_embeds=positive.pooled[0], negative_pooled_prompt_embeds=negative.pooled[0])
    if job.init_image is not None:
        call.update(image=job.init_image, strength=req.strength)
    else:
        call.update(width=req.width, height=req.height)
    call["switch"] = ScheduleSwitch(positive, negative, req.batch_size, sdxl)
    return pipe, call


def _encode(job: _Job, pipe):
    """Both prompts encoded as A1111 does (chunks, weights, clip skip, schedules), of matching lengths."""
    from .conditioning import encode_prompt, match_lengths

    family, skip = job.ref.family, job.req.clip_skip
    steps = total_steps(job.sampler, job.req.steps)
    if skip > 1 and family == "sd2":
        job.emit(Info(f"clip skip {skip} on an SD2 model follows Forge (A1111 ignores it on SD2)", job=job.ref.name))
    positive = encode_prompt(pipe, family, job.prompt, steps, skip)
    negative = encode_prompt(pipe, family, job.negative, steps, skip, zero=family == "sdxl" and not job.negative)
    match_lengths(positive, negative, lambda: encode_prompt(pipe, family, "", 1, skip).embeds[0])
    return positive, negative


def _run_batch(job: _Job, pipe, fixed: dict, batch: int, base_params: dict, device: str) -> bool:
    """One diffusers call for one batch, its images kept; False when cancelled."""
    import torch

    req, ref = job.req, job.ref
    batch_seeds = [(req.seed + batch * req.batch_size + i) % (2**64) for i in range(req.batch_size)]
    generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
    call = dict(fixed)
    switch = call.pop("switch")
    if switch is not None:
        switch.current = (0, 0)
    steps = _Steps(job.emit, ref.name, batch, ref.family, req.preview_every, req.cancel, switch)
    if job.second.transformer:
        from .families.second import preview

        steps.previewer, steps.size = preview, (req.width, req.height)
    call.update(generator=generators, callback_on_step_end=steps,
                callback_on_step_end_tensor_inputs=["latents"] + (switch.tensor_inputs if switch else []))
    out_of_memory = False
    try:
        call_started = time.perf_counter()
        with torch.inference_mode():
            output = passes.run(job, job.entry, pipe, call)
        job.pipeline_seconds += time.perf_counter() - call_started
    except Exception as err:
        if not is_oom(err):
            raise
        out_of_memory = True  # handled below, once the traceback (and the tensors it holds) is gone
    finally:
        pipe._interrupt = False
    if out_of_memory:
        free_memory()
        raise GenerationError(
            f"out of {'GPU ' if device.startswith('cuda') else ''}memory at {req.width}x{req.height}, batch size "
            f"{req.batch_size}: try a smaller size or batch size, or low_vram=True (CPU offload + VAE tiling)")
    if steps.cancelled:
        job.cancelled = True
        job.emit(Info("cancelled: the unfinished images were not saved", job=ref.name))
        return False
    for image, image_seed in zip(output.images, batch_seeds):
        _keep(job, image, image_seed, base_params)
    return True


def _keep(job: _Job, image, seed: int, base_params: dict) -> None:
    """The image's infotext written into it (and into a PNG file when saving)."""
    req = job.req
    # a family without negative prompts (Flux, Z-Image Turbo, Klein) did not use one: the infotext must not say so
    negative = req.negative_prompt if family_run.family_of(job.ref).negative else ""
    text = metadata.build_parameters(_prompt_with_tags(req.prompt, req.loras), negative,
                                     {**base_params, "Seed": seed})
    image.info["parameters"] = text
    job.images.append(image)
    job.seeds.append(seed)
    job.texts.append(text)
    if req.save:
        path = metadata.output_path(metadata.outputs_root(req.outputs_dir), seed)
        metadata.save_png(image, path, text)
        job.paths.append(path)
        job.emit(Completed(path=str(path), bytes=path.stat().st_size, sha256=None, job=job.ref.name))


def _prompt_with_tags(prompt: str, loras: list[LoraSpec]) -> str:
    """The prompt as recorded: LoRAs given as options are written as tags too, so the PNG re-runs as it was."""
    present = {spec.name for spec in extract_loras(prompt)[1]}
    tags = [f"<lora:{spec.name}:{spec.weight:g}>" for spec in loras if spec.name not in present]
    return " ".join([prompt] + tags) if tags else prompt


def _parameters(job: _Job) -> dict:
    req, ref = job.req, job.ref
    # A1111's hash kinds: AutoV3 for LoRAs, 12 hex of the sha256 for embeddings (what CivitAI looks them up by).
    lora_hashes = metadata.hash_list((addon.name, metadata.lora_hash(addon.path)) for addon, _ in job.loras)
    ti_hashes = metadata.hash_list((addon.name, metadata.embedding_hash(addon.path)) for addon in job.embeddings)
    params = {
        "Steps": req.steps,
        "Sampler": job.sampler.name,
        "Schedule type": job.schedule,
        "CFG scale": req.cfg,
        "Seed": req.seed,
        "Size": f"{req.width}x{req.height}",
        "Model hash": metadata.autov2(ref.path),
        "Model": ref.name,
        "VAE hash": metadata.autov2(job.vae.path) if job.vae else None,
        "VAE": job.vae.path.name if job.vae else None,
        **passes.parameters(job),  # Denoising strength, Hires …, Mask blur, Masked content, Inpaint area
        "Clip skip": req.clip_skip if req.clip_skip > 1 else None,
        "Lora hashes": lora_hashes,
        "TI hashes": ti_hashes,
        "Batch size": req.batch_size if req.batch_size > 1 else None,
        "Version": f"colab_sd {__version__}",
    }
    params.update(family_run.infotext(family_run.family_of(ref), req.cfg))
    return params


def load_count() -> int:
    """How many times a model was really loaded in this process (cache hits do not count)."""
    return CACHE.loads


def release() -> None:
    """Unload the current model and free its memory."""
    CACHE.release()


def loaded_model() -> Optional[str]:
    entry = CACHE.entry
    return entry.ref.name if entry else None
