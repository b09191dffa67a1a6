"""The passes after (or instead of) plain txt2img, on the loaded components (nothing is reloaded):

    txt2img ─► [hires fix: upscale (latent mode | spandrel model | Lanczos) ─► img2img at the hires size]
    img2img (init image, A1111 resize modes and step count)
    inpaint (init image + mask: blur, area, masked content, overlay)   ─► images

The engine calls `plan` (torch-free checks, before a model loads), `pipeline` (which pipeline object over the
cached modules), `run` (instead of its single diffusers call) and `parameters` (infotext keys). A 9-channel
inpainting checkpoint always runs through the inpaint pipeline: txt2img with an all-white mask over a grey image,
as A1111 conditions it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from ..errors import InputError
from ..events import Info
from . import hires as _hires
from . import inpaint as _inpaint
from .masks import resize_image, resize_mode_index

log = logging.getLogger("colab_sd.generation")


@dataclass
class SecondPass:
    hires: Optional[_hires.HiresPlan] = None
    mask: Optional[_inpaint.MaskPlan] = None
    resize_mode: int = 0
    inpaint_model: bool = False  # a 9-channel inpainting UNet
    transformer: bool = False  # a transformer (flow-matching) family: its passes run in families/second.py


def load_init_image(req, multiple: int = 8):
    """The init image at the processing size: the request's width/height or the image's own, floored to
    `multiple` px (8; 16 for the transformer families), resized with the request's A1111 resize mode.
    One-line InputError for an unreadable file or a bad mode."""
    from .upscale_files import open_image

    image = open_image(req.init_image, "init image")
    mode = resize_mode_index(getattr(req, "resize_mode", 0) or 0)
    m = multiple
    width = max(64, (req.width or image.width) // m * m)
    height = max(64, (req.height or image.height) // m * m)
    if mode == 3:  # latent upscale: encoded at its own size, the latents resized in `run`
        size = (max(64, image.width // m * m), max(64, image.height // m * m))
        image = image.resize(size) if image.size != size else image
        image.info["target_size"] = (width, height)
        return image
    return resize_image(mode, image, width, height) if image.size != (width, height) else image


def plan(req, ref, init_image, width: int, height: int, emit, transformer: bool = False) -> SecondPass:
    """Hires, mask and resize settings checked before any model is loaded."""
    second = SecondPass(resize_mode=resize_mode_index(getattr(req, "resize_mode", 0) or 0),
                        inpaint_model=getattr(ref, "variant", None) == "inpaint" and not transformer,
                        transformer=transformer)
    second.hires = _hires.plan(req, width, height, multiple=16 if transformer else 8)
    if second.hires is not None and second.inpaint_model:
        raise InputError(f"{ref.name} is an inpainting checkpoint: hires fix runs with ordinary checkpoints; "
                         f"inpaint with this one, or pick another model for hires fix")
    if second.hires is not None and init_image is not None:
        raise InputError("hires fix is for txt2img; with an init image, upscale the image first (colab_sd.upscale) "
                         "or set a larger width/height")
    if getattr(req, "mask", None) is not None:
        if init_image is None:
            raise InputError("a mask needs an init image to inpaint: give init_image (--init) too")
        second.mask, notes = _inpaint.plan_mask(req.mask, init_image, req.mask_blur, req.inpaint_area,
                                                req.inpaint_padding, req.masked_content)
        for note in notes:
            emit(Info(note, job=ref.name))
    return second


def pipeline(job, entry):
    """The pipeline object for this job over the cached modules."""
    second = job.second
    if second.mask is not None or second.inpaint_model:
        return _inpaint.pipeline(entry)
    return entry.img2img() if job.init_image is not None else entry.pipe


def parameters(job) -> dict:
    """Infotext keys of the second pass (hires, inpaint, img2img strength), in A1111's order."""
    second, req = job.second, job.req
    params = {"Denoising strength": req.strength if job.init_image is not None else None}
    if second.hires is not None:
        params.update(_hires.parameters(second.hires, job.sampler.name, job.prompt, job.negative))
        if second.transformer:
            from .families import second as family_second

            params.update(family_second.hires_parameters(job))
    if second.mask is not None:
        params.update(_inpaint.parameters(second.mask))
    return params


def run(job, entry, pipe, call: dict):
    """The diffusers call(s) for one batch; returns an object with `.images` (PIL)."""
    second = job.second
    if second.transformer:
        from .families import second as family_second

        return family_second.run(job, entry, pipe, call)
    if second.hires is not None:
        return _run_hires(job, entry, pipe, call)
    if job.init_image is None and not second.inpaint_model:
        return pipe(**call)
    steps, strength = _hires.img2img_steps(job.req.steps, job.req.strength)
    call = dict(call, num_inference_steps=steps, strength=strength)
    if second.mask is not None:
        return _run_inpaint(job, pipe, call)
    if second.inpaint_model:  # A1111's conditioning for an inpainting model without a mask: all white, grey image
        return _run_full_mask(job, pipe, call)
    if job.init_image.info.get("target_size"):
        call["image"] = _latent_resized(pipe, job.init_image, call["generator"])
    return pipe(**call)


def _seeds(call: dict) -> list[int]:
    return [g.initial_seed() for g in call["generator"]]


def _fresh(seeds: list[int]):
    import torch

    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def _latent_resized(pipe, image, generators):
    """Resize mode 3: the init image encoded at its own size, its latents resized (bilinear) to the target."""
    from .upscalers import upscale_latents

    width, height = image.info["target_size"]
    processed = pipe.image_processor.preprocess(image).to(pipe.vae.device, pipe.vae.dtype)
    latents = pipe.vae.encode(processed).latent_dist.sample(generators[0]) * pipe.vae.config.scaling_factor
    return upscale_latents(latents, "Latent", (height // 8, width // 8))


def _run_full_mask(job, pipe, call: dict):
    from PIL import Image

    width, height = job.req.width, job.req.height
    image = job.init_image if job.init_image is not None else Image.new("RGB", (width, height), (127, 127, 127))
    mask = Image.new("L", image.size, 255)
    call = dict(call, image=image, mask_image=mask, width=image.width, height=image.height)
    if job.init_image is None:
        call.update(strength=1.0, num_inference_steps=job.req.steps)
    return pipe(**call)


def _run_inpaint(job, pipe, call: dict):
    import torch

    plan = job.second.mask
    prepared = _inpaint.prepare(job.init_image, plan, job.req.width, job.req.height)
    call = dict(call, image=prepared.image, mask_image=prepared.mask, width=job.req.width, height=job.req.height)
    with torch.inference_mode():
        latents = _inpaint.edit_latents(pipe, prepared, plan.content, _fresh(_seeds(call)), pipe.unet.dtype)
    if latents is not None:
        call["image"] = latents
        # diffusers would mask the latents as if they were pixels: the masked picture is encoded here instead (a
        # 9-channel UNet reads it; a 4-channel one ignores it)
        call["masked_image_latents"] = _masked_image_latents(pipe, prepared)
    output = pipe(**call)
    output.images = [_inpaint.finish(job.init_image, image, prepared) for image in output.images]
    return output


def _masked_image_latents(pipe, prepared):
    import torch

    image = pipe.image_processor.preprocess(prepared.image).to(pipe.vae.device, pipe.vae.dtype)
    mask = pipe.mask_processor.preprocess(prepared.mask).to(image)
    masked = image * (mask < 0.5)
    with torch.inference_mode():
        return pipe.vae.encode(masked).latent_dist.mode() * pipe.vae.config.scaling_factor


def _run_hires(job, entry, pipe, call: dict):
    """First pass, upscale, then img2img at the hires size with fresh noise from the same seeds."""
    from .samplers import make_scheduler, resolve_sampler
    from .upscalers import is_latent, upscale_image, upscale_latents

    plan, req = job.second.hires, job.req
    steps_cb = call["callback_on_step_end"]
    latent = is_latent(plan.upscaler)
    seeds = _seeds(call)
    first = pipe(**dict(call, output_type="latent" if latent else "pil"))
    if steps_cb.cancelled:
        return first
    (uw, uh), (w, h) = plan.upscaled, plan.size
    if latent:
        image = _hires.crop_latents(upscale_latents(first.images, plan.upscaler, (uh // 8, uw // 8)),
                                    plan.upscaled, plan.size)
    else:
        image = [_center_crop(upscale_image(img, plan.upscaler, resize_to=(uw, uh), models_dir=req.models_dir,
                                            device=entry.device, emit=job.emit), w, h) for img in first.images]
    hires_pipe = entry.img2img()
    sampler, schedule = resolve_sampler(plan.sampler) if plan.sampler else (job.sampler, job.schedule)
    hires_pipe.scheduler = make_scheduler(sampler, schedule, entry.scheduler_config)
    total, strength = _hires.steps_and_strength(plan.steps or req.steps, plan.denoise)
    second = {k: v for k, v in call.items() if k not in ("width", "height", "output_type")}
    second.update(image=image, strength=strength, num_inference_steps=total, generator=_fresh(seeds),
                  output_type="pil")
    if plan.cfg is not None:
        second["guidance_scale"] = plan.cfg
    old_switch = steps_cb.switch
    if plan.prompt or plan.negative_prompt or (old_switch is not None and old_switch.active):
        switch = _conditioning(job, hires_pipe, second, plan.steps or req.steps)
        steps_cb.switch = switch
        second["callback_on_step_end_tensor_inputs"] = ["latents"] + switch.tensor_inputs
    tiling = _hires.vae_needs_tiling(w, h, hires_pipe.vae.dtype, entry.device) and not hires_pipe.vae.use_tiling
    if tiling:
        job.emit(Info(f"VAE tiling on for the {w}x{h} hires decode (it would not fit in GPU memory at once)",
                      job=job.ref.name))
        hires_pipe.vae.enable_tiling()
    try:
        return hires_pipe(**second)
    finally:
        steps_cb.switch = old_switch
        if tiling:
            hires_pipe.vae.disable_tiling()


def _center_crop(image, width: int, height: int):
    if image.size == (width, height):
        return image
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _conditioning(job, pipe, call: dict, steps: int):
    """Hires prompts (or the first pass's, when its prompt edits by step) encoded for the hires step count."""
    from .conditioning import ScheduleSwitch, encode_prompt, match_lengths
    from .prompt import extract_loras

    plan, family, skip = job.second.hires, job.ref.family, job.req.clip_skip
    text = extract_loras(plan.prompt)[0] if plan.prompt else job.prompt
    negative_text = plan.negative_prompt or job.negative
    positive = encode_prompt(pipe, family, text, steps, skip)
    negative = encode_prompt(pipe, family, negative_text, steps, skip, zero=family == "sdxl" and not negative_text)
    match_lengths(positive, negative, lambda: encode_prompt(pipe, family, "", 1, skip).embeds[0])
    call.update(prompt_embeds=positive.embeds[0], negative_prompt_embeds=negative.embeds[0])
    if family == "sdxl":
        call.update(pooled_prompt_embeds=positive.pooled[0], negative_pooled_prompt_embeds=negative.pooled[0])
    switch = ScheduleSwitch(positive, negative, job.req.batch_size, family == "sdxl")
    switch.current = (0, 0)
    return switch

