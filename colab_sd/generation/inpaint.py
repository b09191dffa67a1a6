"""Inpainting as A1111 does it, on diffusers' StableDiffusion(XL)InpaintPipeline built from the loaded components.

Order (A1111 modules/processing.py `StableDiffusionProcessingImg2Img.init`, reference §4.3):
mask → blur (Mask blur) → whole picture, or only the masked box widened by padding and to the processing aspect,
cropped and resized (Resize and fill) → masked content (original / fill / latent noise / latent nothing) →
diffusers inpaint (a 4-channel UNet blends re-noised original latents outside the mask each step; a 9-channel
inpainting UNet gets mask + masked image as extra input) → decode → pasted back into the box → overlay: the
original over the result with alpha = 1 − blurred mask, so pixels outside the blurred mask are the original's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from . import masks


@dataclass
class MaskPlan:
    """A checked mask for one init image (torch-free, made in the plan step)."""

    mask: np.ndarray  # blurred, float32 [0, 1], the init image's size
    area: str  # "whole" or "masked"
    padding: int
    content: str  # "original", "fill", "latent-noise", "latent-nothing"
    blur: int
    resized: bool  # the mask had another size and was resized to the image


def plan_mask(mask_value, image, blur: int, area: str, padding: int, content: str) -> tuple[MaskPlan, list[str]]:
    """The mask for `image` (PIL), checked; returns (plan, notes for the user). One-line InputError when the mask
    cannot be read, is empty (nothing to repaint) or covers everything (that is img2img)."""
    from PIL import Image

    from .upscale_files import open_image

    if area not in masks.INPAINT_AREAS:
        raise InputError(f"unknown inpaint area {area!r}: use whole or masked")
    if content not in masks.MASKED_CONTENT:
        raise InputError(f"unknown masked content {content!r}: use {', '.join(masks.MASKED_CONTENT)}")
    if isinstance(mask_value, np.ndarray):
        mask_image = Image.fromarray((np.clip(mask_value, 0, 1) * 255).astype(np.uint8))
    elif hasattr(mask_value, "convert"):
        mask_image = mask_value
    else:
        opened = open_image(mask_value, "mask")
        with Image.open(mask_value) as raw:  # open_image gave RGB; keep an alpha channel if it has one
            mask_image = raw.copy() if raw.mode in ("RGBA", "LA") else opened
    notes = []
    resized = mask_image.size != image.size
    if resized:
        notes.append(f"the mask is {mask_image.width}x{mask_image.height} and the image {image.width}x"
                     f"{image.height}: the mask was resized to the image")
        mask_image = mask_image.resize(image.size, Image.LANCZOS)
    array = masks.mask_array(mask_image)
    if float(array.max()) < 0.5 / 255:
        raise InputError("the mask is empty (all black): paint the part to repaint in white, or drop the mask "
                         "for plain img2img")
    if float(array.min()) > 254.5 / 255:
        raise InputError("the mask covers the whole image (all white): that is img2img; drop the mask, or paint "
                         "only the part to repaint")
    return MaskPlan(masks.blur_mask(array, blur), area, padding, content, blur, resized), notes


def parameters(plan: MaskPlan) -> dict:
    """A1111's inpaint infotext keys ("original" content and Whole picture are defaults, never written)."""
    return {"Mask blur": plan.blur if plan.blur > 0 else None,
            "Masked content": masks.MASKED_CONTENT[plan.content] if plan.content != "original" else None,
            "Inpaint area": "Only masked" if plan.area == "masked" else None,
            "Masked area padding": plan.padding if plan.area == "masked" else None}


def pipeline(entry) -> Any:
    """The family's inpaint pipeline over the loaded modules (no copy, no load)."""
    import diffusers

    base = entry.pipe
    if isinstance(base, (diffusers.StableDiffusionInpaintPipeline, diffusers.StableDiffusionXLInpaintPipeline)):
        return base
    cached = getattr(entry, "_second_inpaint", None)
    if cached is not None and cached.unet is base.unet and cached.vae is base.vae:
        return cached
    cls = diffusers.StableDiffusionXLInpaintPipeline if entry.ref.family == "sdxl" \
        else diffusers.StableDiffusionInpaintPipeline
    keys = cls._get_signature_keys(cls)[0]
    components = {k: v for k, v in base.components.items() if k in keys}
    extra = {"requires_safety_checker": False} if entry.ref.family != "sdxl" else {}
    pipe = cls(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    entry._second_inpaint = pipe
    return pipe


@dataclass
class Prepared:
    """What goes into the diffusers call for one init image, and how to put the result back."""

    image: Any  # PIL, the processing size
    mask: Any  # PIL L, the processing size (blurred)
    box: Optional[tuple]  # (x1, y1, x2, y2) in the original for "Only masked", else None
    overlay_mask: np.ndarray  # alpha for the final composite, original size


def prepare(init_image, plan: MaskPlan, width: int, height: int) -> Prepared:
    """Crop (Only masked), fill (Masked content: fill) and resize the image and the mask for the pipeline."""
    from PIL import Image

    image, mask = init_image, plan.mask
    if plan.content == "fill":
        image = masks.fill_masked(image, mask)
    if plan.area == "masked":
        box = masks.crop_region(mask, plan.padding)
        box = masks.expand_crop_region(box, width, height, image.width, image.height)
        mask_image = Image.fromarray((mask * 255).round().astype(np.uint8))
        crop_image = masks.resize_image(2, image.crop(box), width, height)
        crop_mask = masks.resize_image(2, mask_image.crop(box), width, height)
        return Prepared(crop_image, crop_mask, box, mask)
    # Whole picture: A1111 doubles the blurred mask for the overlay, so the blur's outer half shows the result
    mask_image = Image.fromarray((mask * 255).round().astype(np.uint8))
    return Prepared(image.resize((width, height), Image.LANCZOS) if image.size != (width, height) else image,
                    mask_image.resize((width, height), Image.LANCZOS) if mask_image.size != (width, height)
                    else mask_image, None, np.clip(mask * 2, 0, 1))


def edit_latents(pipe, prepared: Prepared, content: str, generators, dtype):
    """Latent noise / latent nothing: the init latents with the masked area replaced by seed noise or zeros
    (A1111 `init_latent = init_latent * (1 - mask) + noise_or_zeros * mask`); None for other contents."""
    if content not in ("latent-noise", "latent-nothing"):
        return None
    import torch

    processed = pipe.image_processor.preprocess(prepared.image).to(pipe.vae.device, pipe.vae.dtype)
    latents = pipe.vae.encode(processed).latent_dist.sample(generators[0]) * pipe.vae.config.scaling_factor
    size = latents.shape[-2:]
    mask = torch.from_numpy(np.asarray(prepared.mask, dtype=np.float32) / 255.0)[None, None]
    mask = (torch.nn.functional.interpolate(mask, size=size, mode="bilinear") > 0.5).to(latents)
    if content == "latent-noise":
        fill = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in generators]).to(latents)
        latents = latents.expand(len(generators), -1, -1, -1)
    else:
        fill = torch.zeros_like(latents)
    return (latents * (1 - mask) + fill * mask).to(dtype)


def finish(init_image, result, prepared: Prepared):
    """The result pasted back (Only masked) and the original overlaid outside the mask."""
    from PIL import Image

    if prepared.box is not None:
        x1, y1, x2, y2 = prepared.box
        canvas = init_image.copy()
        canvas.paste(masks.resize_image(1, result, x2 - x1, y2 - y1), (x1, y1))
        result = canvas
    elif result.size != init_image.size:
        result = result.resize(init_image.size, Image.LANCZOS)
    return masks.overlay(init_image, result, prepared.overlay_mask)


def inpaint_class(family: str):
    """The diffusers inpaint pipeline class for an SD family."""
    import diffusers

    return diffusers.StableDiffusionXLInpaintPipeline if family == "sdxl" else diffusers.StableDiffusionInpaintPipeline


def nine_channel_unet(path, config_source: str, local: bool, dtype_kw: dict):
    """The UNet of a single-file inpainting checkpoint: the family's config with in_channels=9 (latents 4 + mask 1
    + masked-image latents 4), since the bundled text-to-image config says 4 and diffusers would refuse the
    9-channel conv_in weights."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_single_file(str(path), config=config_source, subfolder="unet",
                                                 local_files_only=local, in_channels=9, **dtype_kw)
