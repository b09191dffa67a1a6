"""`colab-sd info IMAGE… [--json] [--dir DIR]`: the generation settings stored in images (no torch)."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("info", help="show the generation settings stored in an image (A1111, CivitAI, ComfyUI)",
                              description="Read the prompt and settings an image carries: A1111/Forge/colab_sd "
                                          "'parameters' PNG text, EXIF UserComment (JPEG/WebP, as A1111 and CivitAI "
                                          "write it), CivitAI resources, ComfyUI graphs. With --dir, also say which "
                                          "of its model, LoRAs, VAE and embeddings are in the library (by hash, "
                                          "then by name). Exit 1 when an image has no settings.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, WebP, AVIF or GIF files")
    p.add_argument("--json", action="store_true", help="print one JSON object per image (the read_parameters dict)")
    p.add_argument("--dir", dest="models_dir", help="models root to look the resources up in (default: none)")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from ..errors import ColabSDError
    from ..infotext import read_parameters
    from .common import fail

    status = 0
    for image in args.images:
        try:
            params = read_parameters(image)
        except ColabSDError as err:
            fail(err)
            status = 1
            continue
        plan = None
        if args.models_dir:
            from ..generation.reuse import request_from_parameters

            plan = request_from_parameters(params, args.models_dir)
        if args.json:
            out = {"image": image, **params}
            if plan is not None:
                out["library"] = plan.to_dict()
            print(json.dumps(out, ensure_ascii=False, default=str), flush=True)
        else:
            print(describe(image, params, plan), flush=True)
    return status


def describe(image: str, params: dict, plan=None) -> str:
    """The settings as a few readable lines."""
    lines = [f"{image}  ({params['source']}, {params['where']})"]
    if params["prompt"]:
        lines.append(f"prompt: {params['prompt']}")
    if params["negative_prompt"]:
        lines.append(f"negative: {params['negative_prompt']}")
    main = [f"{label} {params[key]:g}" if isinstance(params[key], float) else f"{label} {params[key]}"
            for key, label in (("steps", "steps"), ("sampler", "sampler"), ("schedule", "schedule"), ("cfg", "CFG"),
                               ("seed", "seed"), ("clip_skip", "clip skip"), ("denoising_strength", "denoise"))
            if params.get(key) is not None]
    if params.get("width") and params.get("height"):
        main.append(f"size {params['width']}x{params['height']}")
    if main:
        lines.append(" · ".join(main))
    if params.get("model") or params.get("model_hash"):
        lines.append(f"model: {params.get('model') or '?'}" + (f" [{params['model_hash']}]"
                                                              if params.get("model_hash") else ""))
    for key, label in (("vae", "VAE"),):
        if params.get(key):
            lines.append(f"{label}: {params[key]}" + (f" [{params['vae_hash']}]" if params.get("vae_hash") else ""))
    if params["loras"]:
        lines.append("LoRAs: " + "; ".join(
            f"{x['name']}" + (f" {x['weight']:g}" if x.get("weight") is not None else "") +
            (f" [{x['hash']}]" if x.get("hash") else "") for x in params["loras"]))
    if params["embeddings"]:
        lines.append("embeddings: " + "; ".join(f"{x['name']}" + (f" [{x['hash']}]" if x.get("hash") else "")
                                                for x in params["embeddings"]))
    hires = {k[6:]: v for k, v in params.items() if k.startswith("hires_") and v is not None}
    if hires:
        lines.append("hires: " + ", ".join(f"{k} {v}" for k, v in hires.items()))
    if params["civitai_resources"]:
        lines.append("CivitAI resources: " + json.dumps(params["civitai_resources"], ensure_ascii=False))
    if params.get("version"):
        lines.append(f"made with: {params['version']}")
    for key, value in params["extra"].items():
        lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")
    if plan is not None:
        found = [f"{r.kind} {r.name or r.hash} → {r.found} (by {r.how})" for r in plan.resources if r.found]
        if found:
            lines.append("in the library: " + "; ".join(found))
        if plan.missing:
            lines.append("not in the library: " + plan.missing_text())
    lines.extend(f"note: {w}" for w in params["warnings"])
    return "\n".join(lines)
