"""`colab-sd generate` options of the second pass: hires fix, inpainting, resize mode (A1111's names and defaults).

`--hires-scale S` alone turns hires fix on with A1111's defaults (Latent upscaler, 0.7 denoising, the same steps).
Only options actually given become request fields, so `--from IMAGE` values are not overridden by defaults.
"""
from __future__ import annotations

import argparse

AREAS = {"whole": "whole", "masked": "masked"}
CONTENTS = ("original", "fill", "latent-noise", "latent-nothing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hires fix (txt2img)")
    g.add_argument("--hires-scale", type=float, metavar="S", help="upscale by S (turns hires fix on; A1111 default 2)")
    g.add_argument("--hires-resize", metavar="WxH", help="resize to W×H instead of a scale (0 for a side: keep aspect)")
    g.add_argument("--hires-upscaler", metavar="NAME",
                   help="Latent (default), Latent (bicubic)…, Lanczos, or a model in DIR/upscaler")
    g.add_argument("--hires-steps", type=int, metavar="N", help="hires steps (default: the same as --steps)")
    g.add_argument("--hires-denoise", type=float, metavar="D", help="hires denoising strength (default 0.7)")
    g.add_argument("--hires-sampler", metavar="NAME", help="hires sampler (default: the same)")
    g.add_argument("--hires-prompt", metavar="TEXT", help="hires prompt (default: the same)")
    g = p.add_argument_group("img2img and inpainting (with --init)")
    g.add_argument("--resize-mode", metavar="MODE",
                   help="Just resize (default), Crop and resize, Resize and fill, Just resize (latent upscale)")
    g.add_argument("--mask", metavar="MASK", help="inpaint mask image: white = repaint")
    g.add_argument("--mask-blur", type=int, metavar="N", help="mask blur in px (default 4)")
    g.add_argument("--inpaint-area", choices=tuple(AREAS), help="whole picture (default) or only the masked box")
    g.add_argument("--inpaint-padding", type=int, metavar="PX", help="padding around the masked box (default 32)")
    g.add_argument("--masked-content", choices=CONTENTS, help="what the masked area starts from (default original)")


def fields(args) -> dict:
    """The request fields of the options given on the command line."""
    out = {"hires_scale": args.hires_scale, "hires_upscaler": args.hires_upscaler, "hires_steps": args.hires_steps,
           "hires_denoise": args.hires_denoise, "hires_sampler": args.hires_sampler, "hires_prompt": args.hires_prompt,
           "resize_mode": args.resize_mode, "mask": args.mask, "mask_blur": args.mask_blur,
           "inpaint_area": args.inpaint_area, "inpaint_padding": args.inpaint_padding,
           "masked_content": args.masked_content}
    if args.hires_resize:
        from ..errors import InputError

        try:
            width, height = (int(x) for x in args.hires_resize.lower().replace("×", "x").split("x"))
        except ValueError:
            raise InputError(f"--hires-resize takes WxH (like 1024x1536), not {args.hires_resize!r}") from None
        out.update(hires_resize_width=width, hires_resize_height=height)
    return {k: v for k, v in out.items() if v is not None}
