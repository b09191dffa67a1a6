"""`colab-sd upscale IMAGE… --upscaler NAME`: upscale image files with a library upscaler (spandrel) or Lanczos."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("upscale", help="upscale images with a model from upscaler/ (ESRGAN & co) or Lanczos",
                              description="Upscale image files with an upscaler from DIR/upscaler (any .pth / "
                                          ".safetensors spandrel recognises: ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT…), "
                                          "or Lanczos / Nearest; prints the saved PNG paths. The source's A1111 "
                                          "parameters are kept in the PNG.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP…)")
    p.add_argument("--upscaler", "-u", required=True,
                   help="a file name in DIR/upscaler (with or without extension), a path, or Lanczos / Nearest")
    p.add_argument("--scale", "-s", type=float, default=None,
                   help="factor for each side (default: the model's own scale, 2 for Lanczos / Nearest)")
    p.add_argument("--tile", type=int, default=None, help="tile size in px (default: by device; 0 = whole image)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--dir", dest="models_dir", help="models root (default: $COLAB_SD_HOME, /content/models in Colab, ./models)")
    p.add_argument("--out", dest="outputs_dir", help="outputs folder; files go to OUT/upscaled/ (default: the outputs folder)")
    p.add_argument("--json", action="store_true", help="print one JSON event per line on stdout")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from ..events import JsonLines
    from ..generation.upscale_files import default_scale, upscale

    listener = JsonLines(sys.stdout) if args.json else _print_info
    scale = args.scale if args.scale is not None else default_scale(args.upscaler, args.models_dir)
    result = upscale(args.images, args.upscaler, scale=scale, models_dir=args.models_dir,
                     outputs_dir=args.outputs_dir, device=args.device, tile=args.tile, on_event=listener)
    if args.json:
        print(json.dumps({"status": "done", "paths": [str(p) for p in result.paths], "upscaler": result.upscaler}),
              flush=True)
    else:
        for path in result.paths:
            print(path, flush=True)
    return 0


def _print_info(event) -> None:
    from ..events import Info

    if isinstance(event, Info):
        print(event.message, file=sys.stderr, flush=True)
