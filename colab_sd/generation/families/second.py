"""img2img and hires fix for the transformer families (Flux.1, Chroma, SD3.x, Z-Image), on the cached modules.

    img2img:   init image ─► the family's image-to-image pipeline (`from_pipe`: the same modules, no copy)
    hires fix: first pass at the base size ─► upscale ─► img2img at the hires size (hires steps, denoising,
               prompt), fresh noise from the same seeds, so one seed always gives the same two-pass image

The A1111 parts are the SD path's (`hires.plan` sizes, `hires.steps_and_strength` / `img2img_steps` step counts,
`upscalers` for the upscale); what differs here is what these pipelines take: prompt strings (`run.call_kwargs`),
their own flow-matching scheduler (no sampler choice), and latents that Flux and Chroma keep packed in 2×2 patches.
A latent upscale mode interpolates the first pass's latents in the family's own latent space (16 channels), as
Forge does for Flux; a diffusers img2img pipeline takes those latents as `image` (its `latent_channels` check).
"""
from __future__ import annotations

import logging
from typing import Optional

from ...events import Info
from .. import hires as _hires

log = logging.getLogger("colab_sd.generation")


def img2img_pipeline(pipe, fam):
    """`fam`'s image-to-image pipeline over `pipe`'s modules: diffusers `from_pipe` hands the same module objects
    over (nothing is copied or loaded; LoRA adapters and fp16 guards on them apply to both)."""
    import diffusers

    cls = getattr(diffusers, fam.img2img)
    new = cls.from_pipe(pipe)
    processor = getattr(new, "image_processor", None)
    if processor is not None and getattr(processor.config, "vae_latent_channels", None) != new.vae.config.latent_channels:
        # ChromaImg2ImgPipeline builds its processor without the latent channel count (Flux's passes it), so the
        # hires fix's upscaled 16-channel latents given as `image` were resized as pixels to the hires size
        from diffusers.image_processor import VaeImageProcessor

        new.image_processor = VaeImageProcessor.from_config(processor.config,
                                                            vae_latent_channels=new.vae.config.latent_channels)
    new.set_progress_bar_config(disable=True)
    encode_guard(new.vae)
    return new


def encode_guard(vae) -> None:
    """Wrap `vae.encode` (once) so an fp32 VAE (what the families decode with on fp16 GPUs) takes an fp16 image
    and hands back latents in that same dtype. diffusers' Flux / Chroma / SD3 img2img pipelines cast the init image
    to the prompt embeddings' dtype before encoding: fp16 once the text encoders' outputs are fp16, which an fp32
    VAE refuses ("Input type (c10::Half) and bias type (float)"). With the tiny test models the encoders hand back
    fp32 and the wrap is a no-op; `test_encode_guard_lets_an_fp32_vae_take_fp16_images` checks it directly."""
    if getattr(vae, "_colab_sd_encode_guard", False):
        return
    original = vae.encode

    def encode(x, *args, **kwargs):
        import torch

        wanted = x.dtype if isinstance(x, torch.Tensor) else None
        if wanted is not None and wanted != vae.dtype:
            x = x.to(vae.dtype)
        out = original(x, *args, **kwargs)
        if wanted is not None and wanted != vae.dtype:
            dist = out[0] if isinstance(out, tuple) else out.latent_dist
            for name in ("parameters", "mean", "logvar", "std", "var"):
                value = getattr(dist, name, None)
                if isinstance(value, torch.Tensor):
                    setattr(dist, name, value.to(wanted))
        return out

    vae.encode = encode
    vae._colab_sd_encode_guard = True


def refusal(fam, req) -> Optional[str]:
    """Why this request's second pass cannot run with `fam` (one line), or None. Inpainting is for the SD
    families; img2img and hires fix need the family's image-to-image pipeline (`Family.img2img`)."""
    if not fam.is_transformer:
        return None
    if getattr(req, "mask", None) is not None:
        return (f"inpainting with {fam.name} is not available in colab_sd: inpaint with an SD1.x / SDXL model, or "
                f"drop the mask to run img2img")
    if fam.img2img is not None:
        return None
    if req.init_image is not None:
        return (f"img2img with {fam.name} is not available: diffusers has no image-to-image pipeline for it "
                f"({fam.pipeline} takes an image only as a reference to edit); generate from text, or use a "
                f"Flux dev / schnell, Chroma, SD3 or Z-Image model for img2img")
    if _hires.wanted(req):
        return (f"hires fix with {fam.name} needs an image-to-image pass, which diffusers has not got for it: "
                f"generate at the size you want instead")
    return None


def notes(fam, req) -> list[str]:
    """One-line notes on second-pass fields this family ignores."""
    if fam.is_transformer and _hires.wanted(req) and req.hires_sampler:
        return [f"the hires sampler does not apply to {fam.name} (its own flow-matching Euler): ignored"]
    return []


def run(job, entry, pipe, call: dict):
    """The diffusers call(s) for one batch of a transformer family; returns an object with `.images` (PIL)."""
    if job.second.hires is not None:
        return _run_hires(job, entry, pipe, call)
    if job.init_image is None:
        return pipe(**call)
    steps, strength = _hires.img2img_steps(job.req.steps, job.req.strength, flow=True)
    call = dict(call, num_inference_steps=steps, strength=strength)
    target = job.init_image.info.get("target_size")
    if target:  # resize mode 3: encoded at its own size, the latents resized to the target
        call.update(image=_latent_resized(pipe, job.init_image, target, call["generator"]),
                    width=target[0], height=target[1])
    return pipe(**call)


def _encode(pipe, image, generators):
    """An image's latents in the space the family's transformer works in: (z − shift) · scale."""
    import torch

    vae = pipe.vae
    processed = pipe.image_processor.preprocess(image).to(vae.device, vae.dtype)
    with torch.inference_mode():
        z = vae.encode(processed).latent_dist.sample(generators[0])
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (z - shift) * vae.config.scaling_factor


def _latent_resized(pipe, image, target, generators):
    from ..upscalers import upscale_latents

    factor = pipe.vae_scale_factor
    return upscale_latents(_encode(pipe, image, generators), "Latent", (target[1] // factor, target[0] // factor))


def _first_latents(pipe, latents, width: int, height: int):
    """The first pass's latents as (B, C, h, w): Flux and Chroma return them packed in 2×2 patches."""
    if latents.ndim == 3 and hasattr(pipe, "_unpack_latents"):
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    return latents


def _run_hires(job, entry, pipe, call: dict):
    """First pass, upscale, then img2img at the hires size with fresh noise from the same seeds."""
    from .. import passes
    from ..prompt import extract_loras
    from ..upscalers import is_latent, upscale_image, upscale_latents
    from . import run as family_run

    plan, req = job.second.hires, job.req
    steps_cb = call["callback_on_step_end"]
    latent = is_latent(plan.upscaler)
    seeds = [g.initial_seed() for g in call["generator"]]
    first = pipe(**dict(call, output_type="latent" if latent else "pil"))
    if steps_cb.cancelled:
        return first
    (uw, uh), (w, h) = plan.upscaled, plan.size
    hires_pipe = entry.img2img()
    if latent:
        factor = hires_pipe.vae_scale_factor
        latents = _first_latents(pipe, first.images, req.width, req.height)
        image = _hires.crop_latents(upscale_latents(latents, plan.upscaler, (uh // factor, uw // factor)),
                                    plan.upscaled, plan.size, factor)
    else:
        image = [passes._center_crop(upscale_image(img, plan.upscaler, resize_to=(uw, uh), models_dir=req.models_dir,
                                                   device=entry.device, emit=job.emit), w, h)
                 for img in first.images]
    total, strength = _hires.steps_and_strength(plan.steps or req.steps, plan.denoise, flow=True)
    prompt = extract_loras(plan.prompt)[0] if plan.prompt else job.prompt
    cfg = plan.cfg if plan.cfg is not None else job.cfg
    fam = family_run.family_of(job.ref)
    second = family_run.call_kwargs(fam, hires_pipe, prompt, plan.negative_prompt or job.negative,
                                    req.replace(steps=total, width=w, height=h), cfg)
    second.update(image=image, strength=strength, generator=passes._fresh(seeds), callback_on_step_end=steps_cb,
                  callback_on_step_end_tensor_inputs=["latents"])
    steps_cb.size = (w, h)  # previews of the hires pass unpack at its size
    vae = hires_pipe.vae
    tiling = _hires.vae_needs_tiling(w, h, vae.dtype, entry.device) and not getattr(vae, "use_tiling", True)
    if tiling:
        job.emit(Info(f"VAE tiling on for the {w}x{h} hires decode (it would not fit in GPU memory at once)",
                      job=job.ref.name))
        vae.enable_tiling()
    try:
        return hires_pipe(**second)
    finally:
        if tiling:
            vae.disable_tiling()


def preview(pipe, latents, size):
    """A small picture of the latents mid-run, decoded by the pipeline's own VAE (no latent→RGB table is kept for
    these 16-channel latent spaces): the first image, unpacked at `size` (width, height) when packed, shrunk to at
    most 32 latent px a side first, so a decode costs a 256 px image's. None while the VAE is offloaded (a decode
    would move the transformer off the GPU and back) or for a latent layout it cannot decode (Flux.2's)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    vae = pipe.vae
    if getattr(vae, "_hf_hook", None) is not None or not hasattr(vae.config, "scaling_factor"):
        return None
    x = _first_latents(pipe, latents[:1], *size)
    h, w = x.shape[-2:]
    shrink = max(h, w) / 32
    if shrink > 1:
        x = F.interpolate(x.float(), size=(max(1, round(h / shrink)), max(1, round(w / shrink))), mode="bilinear")
    x = x.to(vae.dtype) / vae.config.scaling_factor + (getattr(vae.config, "shift_factor", None) or 0.0)
    with torch.inference_mode():
        image = vae.decode(x, return_dict=False)[0][0]
    rgb = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")


def hires_parameters(job) -> dict:
    """Forge's hires keys for these families: no hires sampler (the family's Euler is fixed); a distilled-guidance
    model writes `Hires Distilled CFG Scale` (Forge: always, the first pass's value when none was set) in place of
    `Hires CFG Scale`."""
    from . import run as family_run

    fam = family_run.family_of(job.ref)
    plan = job.second.hires
    params = {"Hires sampler": None}
    if fam.guidance == "distilled":
        params.update({"Hires CFG Scale": None,
                       "Hires Distilled CFG Scale": plan.cfg if plan.cfg is not None else job.req.cfg})
    return params
