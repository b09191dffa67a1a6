"""`colab-sd recreate SOURCE [--dir D] [--out O] [--no-generate] [--no-download] [--json]`: a CivitAI image page,
an image URL or a local PNG/JPEG/WebP in; its checkpoint, LoRAs, embeddings and VAE found or downloaded; the
image generated again (unless --no-generate).

Progress of downloads and generation goes to stderr; stdout holds the report (or one JSON object with --json:
the request and each resource found / downloaded / missing with why). Torch is imported only to generate.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_FAILED, EXIT_OK


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "recreate", help="recreate an image from its CivitAI page or its file",
        description="Read an image's generation data (CivitAI's image page, or the file's own A1111 metadata), "
                    "download every resource it used, and generate it again.")
    p.add_argument("source", help="civitai.com/images/ID, civitai.red/images/ID, an image URL, or a PNG/JPEG/WebP")
    p.add_argument("--dir", dest="models_dir",
                   help="models root (default: $COLAB_SD_HOME, /content/models in Colab, ./models)")
    p.add_argument("--out", dest="outputs_dir", help="where the image goes (default: $COLAB_SD_OUTPUTS, ./outputs)")
    p.add_argument("--no-generate", dest="generate", action="store_false",
                   help="only find and download the resources, and print the request")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="download nothing: report what is missing")
    p.add_argument("--json", action="store_true", help="print one JSON object: request, resources, notes, images")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from ..events import TqdmBar
    from ..recreation import recreate

    bar = TqdmBar(file=sys.stderr)  # downloads' bars and messages; StepProgress is not drawn here
    result = recreate(args.source, args.models_dir, generate=args.generate, download=args.download,
                      outputs_dir=args.outputs_dir, on_event=bar)
    if args.json:
        data = result.to_dict()
        data["request"] = {k: (list(map(list, v)) if k == "loras" else v) for k, v in data["request"].items()}
        print(json.dumps(data, ensure_ascii=False, default=str))
    else:
        print(f"recreating {result.source}")
        for line in result.lines():
            print(line)
        shown = {k: v for k, v in result.request.items() if k not in ("prompt", "negative_prompt") and v}
        print(f"prompt: {result.request.get('prompt', '')}")
        if result.request.get("negative_prompt"):
            print(f"negative: {result.request['negative_prompt']}")
        print("settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        for path in result.paths:
            print(f"saved: {path}")
    # Asked for an image and got none (no checkpoint could be had): the report says why; the status says so too.
    return EXIT_FAILED if args.generate and not result.paths else EXIT_OK
