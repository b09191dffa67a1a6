"""The `colab-sd` command: download, models, generate, app.

Each subcommand's options and handler are registered by a small function; heavy modules are
imported inside the handlers only, so `colab-sd download` never loads torch or ipywidgets.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional

from . import __version__
from .errors import ColabSDError
from .tokens import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[colab_sd] %(levelname)s %(message)s"))
    handler.addFilter(_RedactFilter())
    logger = logging.getLogger("colab_sd")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


class _RedactFilter(logging.Filter):
    """Last line of defence: scrub tokens from every record the CLI prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def fail(message: object) -> None:
    """One line on stderr, token-free."""
    print(f"colab-sd: error: {redact(message)}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- download


def _add_download(sub) -> None:
    p = sub.add_parser("download", help="download model files into the models library",
                       description="Download model URLs (CivitAI, Hugging Face, Google Drive, direct links) into DIR/KIND/.")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--dir", dest="models_dir", help="models root (default: $COLAB_SD_HOME, /content/models in Colab, ./models)")
    p.add_argument("--type", dest="kind", help="model kind / folder: checkpoint, lora, vae, embedding, controlnet, upscaler, other (default: auto)")
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
    p.set_defaults(handler=_run_download)


def _connections(text: str) -> int:
    from .transfer import MAX_CONNECTIONS

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CONNECTIONS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_CONNECTIONS}, got {text!r}")
    return value


def _run_download(args) -> int:
    from .api import download
    from .events import Error, Fanout, JsonLines, TqdmBar
    from .tokens import TokenStore, redact_url
    from .transfer import TransferOptions

    if len(args.urls) > 1 and (args.name or args.sha256):
        fail("--name and --sha256 apply to one URL; run one command per URL to use them")
        return EXIT_USAGE
    tokens = TokenStore(civitai=args.civitai_token, huggingface=args.hf_token)
    listener = JsonLines(sys.stdout) if args.json else TqdmBar(file=sys.stderr)
    failures = 0
    for url in args.urls:
        try:
            download(url, kind=args.kind, models_dir=args.models_dir, name=args.name, sha256=args.sha256,
                     on_event=listener, tokens=tokens, connections=args.connections,
                     options=TransferOptions(verify=args.verify), source=args.source)
        except KeyboardInterrupt:
            fail(f"interrupted: {redact_url(url)} (the partial file is kept; run again to resume)")
            return EXIT_INTERRUPTED
        except ColabSDError as err:
            failures += 1
            fail(err)
        except Exception as err:  # an unexpected bug: one line, traceback only with --verbose
            failures += 1
            logging.getLogger("colab_sd").debug("unexpected error", exc_info=True)
            fail(f"{type(err).__name__}: {err} (run with --verbose for details)")
            if args.json:
                Fanout(listener)(Error(message=redact(f"{type(err).__name__}: {err}"), job=redact_url(url)))
    return EXIT_FAILED if failures else EXIT_OK


# ---------------------------------------------------------------------------------------------- registry

# Subcommands, in help order. Other parts of the package add theirs here (models, generate, app).
SUBCOMMANDS: list[Callable] = [_add_download]


def _optional_subcommands() -> list[Callable]:
    """Subcommands defined next to the code they drive; importing their CLI modules is cheap."""
    found = []
    for module, attr in (("colab_sd.library_cli", "add_parser"), ("colab_sd.generation.cli", "add_parser"),
                         ("colab_sd.ui.cli", "add_parser")):
        try:
            mod = __import__(module, fromlist=[attr])
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):
                continue  # that part is not there yet
            raise
        found.append(getattr(mod, attr))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colab-sd", description="Stable Diffusion workstation: verified model downloads and generation.")
    parser.add_argument("--version", action="version", version=f"colab-sd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show detailed logs (and tracebacks) on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS + _optional_subcommands():
        add(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except ColabSDError as err:
        fail(err)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
