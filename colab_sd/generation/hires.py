"""Hires fix (A1111 modules/processing.py `StableDiffusionProcessingTxt2Img`, reference §3): the first pass, an
upscale (a latent mode without decoding, or decode → upscaler → encode), then img2img at the hires size on the same
loaded modules, with fresh noise from the same seeds, so one seed always gives the same two-pass image.

Pure parts (no torch): `HiresPlan`, `target`, `steps_and_strength`, `parameters`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..errors import InputError
from .request import checked_float, checked_int

# A1111's UI defaults for a hires fix turned on with nothing else said
DEFAULT_SCALE = 2.0
DEFAULT_UPSCALER = "Latent"
DEFAULT_DENOISE = 0.7
MAX_SIDE = 4096


@dataclass(frozen=True)
class HiresPlan:
    """The checked hires settings of a request, with the sizes worked out."""

    scale: float
    resize: tuple[int, int]  # (width, height) asked for; 0 = not used
    upscaler: str
    steps: int  # 0: the first pass's steps
    denoise: float
    sampler: Optional[str]
    prompt: str
    negative_prompt: str
    cfg: Optional[float]
    upscaled: tuple[int, int]  # (width, height) the upscale makes
    size: tuple[int, int]  # (width, height) of the final image (after the central crop, /8)


def wanted(req) -> bool:
    """Hires fix is on when the request sets any hires size, upscaler or step count (the CLI's --hires-scale alone
    turns it on with A1111's defaults)."""
    return any(getattr(req, name, None) not in (None, 0, "")
               for name in ("hires_scale", "hires_resize_width", "hires_resize_height", "hires_upscaler",
                            "hires_steps"))


def target(width: int, height: int, scale: float, resize_w: int, resize_h: int,
           multiple: int = 8) -> tuple[tuple[int, int], tuple[int, int]]:
    """((upscaled w, h), (final w, h)) by A1111's rules: by `scale` when no resize is given; one resize side derives
    the other keeping the aspect; both → scale to cover, then crop centrally. Sizes are floored to multiples of
    `multiple` px: 8 for the UNet families (diffusers needs it; A1111 floors through the latent size), 16 for the
    transformer families (8 px latents in 2×2 patches)."""
    if not resize_w and not resize_h:
        up = (int(width * scale), int(height * scale))
        final = up
    elif not resize_h:
        up = final = (resize_w, resize_w * height // width)
    elif not resize_w:
        up = final = (resize_h * width // height, resize_h)
    else:
        final = (resize_w, resize_h)
        if width / height < resize_w / resize_h:
            up = (resize_w, resize_w * height // width)
        else:
            up = (resize_h * width // height, resize_h)
    up = (up[0] // multiple * multiple, up[1] // multiple * multiple)
    final = (final[0] // multiple * multiple, final[1] // multiple * multiple)
    return up, final


def plan(req, width: int, height: int, multiple: int = 8) -> Optional[HiresPlan]:
    """The request's hires settings checked against the first-pass size (sizes floored to `multiple` px, see
    `target`); None when hires fix is off."""
    from .samplers import resolve_sampler
    from .upscalers import resolve_upscaler

    if not wanted(req):
        return None
    scale = checked_float("hires scale", req.hires_scale if req.hires_scale is not None else DEFAULT_SCALE, 1.0, 8.0)
    rw = checked_int("hires resize width", req.hires_resize_width or 0, 0, MAX_SIDE)
    rh = checked_int("hires resize height", req.hires_resize_height or 0, 0, MAX_SIDE)
    steps = checked_int("hires steps", req.hires_steps or 0, 0, 500)
    denoise = checked_float("hires denoising strength", req.hires_denoise if req.hires_denoise is not None
                      else DEFAULT_DENOISE, 0.0, 1.0)
    if denoise <= 0:
        raise InputError("hires denoising strength must be above 0 (0.3 keeps the picture, 0.7 is A1111's default)")
    name, _ = resolve_upscaler(req.hires_upscaler or DEFAULT_UPSCALER, req.models_dir)
    sampler = None
    if req.hires_sampler:
        sampler = resolve_sampler(req.hires_sampler)[0].name
    cfg = None if req.hires_cfg is None else checked_float("hires CFG scale", req.hires_cfg, 0.0, 50.0)
    up, final = target(width, height, scale, rw, rh, multiple)
    for label, (w, h) in (("hires size", final), ("hires upscale", up)):
        if min(w, h) < 64 or max(w, h) > MAX_SIDE:
            raise InputError(f"{label} {w}x{h} is outside 64–{MAX_SIDE} px: use a smaller scale or resize")
    return HiresPlan(scale, (rw, rh), name, steps, denoise, sampler, req.hires_prompt or "",
                     req.hires_negative_prompt or "", cfg, up, final)


def steps_and_strength(steps: int, denoise: float, flow: bool = False) -> tuple[int, float]:
    """(num_inference_steps, strength) for diffusers so that exactly `steps` steps run, as A1111's hires pass does:
    a schedule of int(steps / min(d, 0.999)) and its last `steps` (A1111 sd_samplers_common `setup_img2img_steps`).
    `flow`: for the flow-matching img2img pipelines (see `strength_for`)."""
    total = max(steps, int(steps / min(denoise, 0.999)))
    return total, strength_for(total, steps, flow)


def img2img_steps(steps: int, denoise: float, flow: bool = False) -> tuple[int, float]:
    """(num_inference_steps, strength) for A1111's plain img2img: int(min(d, 0.999)·steps) + 1 steps of a `steps`
    schedule (20 steps at 0.75 → 16), which diffusers' int(steps·strength) would make 15 (A1111 #193)."""
    run = int(min(denoise, 0.999) * steps) + 1
    return steps, strength_for(steps, min(run, steps), flow)


def strength_for(total: int, run: int, flow: bool) -> float:
    """The diffusers `strength` that runs the last `run` steps of a `total`-step schedule. The UNet img2img
    pipelines skip total − int(total·strength) steps (so a hair above run/total); the flow-matching ones (Flux,
    Chroma, SD3, Z-Image) skip int(total − total·strength) (so a hair above would run one step more: half a step
    below is exact for both roundings)."""
    if flow:
        return min(1.0, (run - 0.5) / total) if run < total else 1.0
    return min(1.0, run / total + 1e-6)


def parameters(plan: HiresPlan, first_sampler: str, prompt: str, negative: str) -> dict:
    """The infotext keys A1111 writes for hires fix (`Size` stays the first pass's)."""
    resized = plan.resize != (0, 0)
    return {
        "Denoising strength": plan.denoise,
        "Hires upscale": None if resized else plan.scale,
        "Hires resize": f"{plan.resize[0]}x{plan.resize[1]}" if resized else None,
        "Hires steps": plan.steps or None,
        "Hires upscaler": plan.upscaler,
        "Hires sampler": plan.sampler if plan.sampler and plan.sampler != first_sampler else None,
        "Hires CFG Scale": plan.cfg,
        "Hires prompt": plan.prompt if plan.prompt and plan.prompt != prompt else None,
        "Hires negative prompt": plan.negative_prompt if plan.negative_prompt and plan.negative_prompt != negative
        else None,
    }


def crop_latents(latents, up: tuple[int, int], final: tuple[int, int], factor: int = 8):
    """The central crop of the resize-to case, in latent pixels of `factor` image pixels (floor of half at the
    start, the rest at the end)."""
    cut_x, cut_y = (up[0] - final[0]) // factor, (up[1] - final[1]) // factor
    if cut_x <= 0 and cut_y <= 0:
        return latents
    h, w = latents.shape[-2:]
    return latents[..., cut_y // 2: h - math.ceil(cut_y / 2), cut_x // 2: w - math.ceil(cut_x / 2)]


def vae_needs_tiling(width: int, height: int, dtype, device: str) -> bool:
    """Whether decoding (or encoding) a `width`×`height` image at once would not fit in the GPU's free memory.

    The estimate is the decoder's largest activations: the last stages run 128–256 channels at full size, with
    a few of them alive at once, about 2 KiB per output pixel in fp16 (4 KiB in fp32): 1024² ≈ 2 GiB, 2048²
    ≈ 8 GiB; with the headroom below, SDXL at 2048² tiles on a 16 GB T4 once the UNet is resident. An estimate,
    not a measurement on this machine; on the CPU the answer is always False.
    """
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    per_pixel = 2048 if dtype in (torch.float16, torch.bfloat16) else 4096
    need = width * height * per_pixel
    free, _ = torch.cuda.mem_get_info()
    return need > free * 0.8
