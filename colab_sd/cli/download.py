"""`colab-sd download URL [URL ...]`: model links into DIR/KIND/NAME, one tqdm bar or JSON events per line.

Light on purpose: nothing here (nor in what the handler imports) loads torch, diffusers or ipywidgets.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import ColabSDError, InputError
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail

_EPILOG = """\
links it understands:
  CivitAI       https://civitai.com/models/ID[/slug][?modelVersionId=V], /api/download/models/V, civitai:V,
                urn:air:...:civitai:MODEL@VERSION, a bare version id with --source civitai
  Hugging Face  https://huggingface.co/OWNER/REPO/blob|resolve/REV/PATH, hf.co/..., OWNER/REPO/PATH,
                OWNER/REPO@REV/PATH, a whole diffusers repo as OWNER/REPO
  Google Drive  https://drive.google.com/file/d/ID/view, open?id=ID, uc?id=ID, folders
  anything else over http(s)

tokens (looked up: --civitai-token/--hf-token, then the environment, then a Colab secret of the same name):
  CivitAI       CIVITAI_TOKEN, CIVITAI_API_TOKEN or CIVITAI_API_KEY
  Hugging Face  HF_TOKEN or HUGGING_FACE_HUB_TOKEN
  prefer the environment: options are visible to other users in `ps`. Tokens never appear in any output.

exit status: 0 every link succeeded, 1 some failed (one line each), 2 usage error, 130 interrupted (the .part is
kept; run the same command again to resume)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "download", help="download model files into the models library",
        description="Download model URLs (CivitAI, Hugging Face, Google Drive, direct links) into DIR/KIND/.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--dir", dest="models_dir",
                   help="models root (default: $COLAB_SD_HOME, /content/models in Colab, ./models)")
    p.add_argument("--type", dest="kind", type=kind_option,
                   help="model kind / folder: checkpoint, lora, vae, embedding, controlnet, upscaler, other "
                        "(default: auto)")
    p.add_argument("--name", help="save under this file name (one URL only)")
    p.add_argument("--source", choices=("civitai", "huggingface", "gdrive", "direct"),
                   help="treat the URL as from this service (e.g. a bare CivitAI version id with --source civitai)")
    p.add_argument("--sha256", help="expected sha256 of the file (one URL only)")
    p.add_argument("--connections", type=_connections, default=None, metavar="N",
                   help="parallel connections per file, 1-64 (default: automatic, up to 16)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not compute sha256 (the size is still checked; a known hash is then not checked either)")
    p.add_argument("--civitai-token", help=argparse.SUPPRESS)  # prefer CIVITAI_TOKEN: argv is visible in `ps`
    p.add_argument("--hf-token", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON event per line on stdout")
    p.set_defaults(handler=run)
    return p


def kind_option(text: str) -> str:
    """argparse type for --type: a known kind word (or auto), else a usage error (exit 2)."""
    from ..library import normalize_kind

    try:
        return normalize_kind(text) or "auto"
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _connections(text: str) -> int:
    from ..transfer import MAX_CONNECTIONS

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CONNECTIONS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_CONNECTIONS}, got {text!r}")
    return value


def run(args) -> int:
    from ..api import download
    from ..events import Error, Fanout, JsonLines, TqdmBar
    from ..tokens import TokenStore, redact, redact_url
    from ..transfer import TransferOptions

    if len(args.urls) > 1 and (args.name or args.sha256):
        fail("--name and --sha256 apply to one URL; run one command per URL to use them")
        return EXIT_USAGE
    tokens = TokenStore(civitai=args.civitai_token, huggingface=args.hf_token)
    listener = JsonLines(sys.stdout) if args.json else TqdmBar(file=sys.stderr)
    kind = None if args.kind == "auto" else args.kind
    failures = 0
    for url in args.urls:
        try:
            download(url, kind=kind, models_dir=args.models_dir, name=args.name, sha256=args.sha256,
                     on_event=listener, tokens=tokens, connections=args.connections,
                     options=TransferOptions(verify=args.verify), source=args.source)
        except KeyboardInterrupt:
            fail(f"interrupted: {redact_url(url)} (the partial file is kept; run again to resume)")
            return EXIT_INTERRUPTED
        except ColabSDError as err:
            failures += 1
            fail(err)
        except BrokenPipeError:  # the reader of --json went away: main() ends quietly
            raise
        except Exception as err:  # an unexpected bug: one line, traceback only with --verbose
            failures += 1
            logging.getLogger("colab_sd").debug("unexpected error", exc_info=True)
            fail(f"{type(err).__name__}: {err} (run with --verbose for details)")
            if args.json:
                Fanout(listener)(Error(message=redact(f"{type(err).__name__}: {err}"), job=redact_url(url)))
    return EXIT_FAILED if failures else EXIT_OK
