"""The `colab-sd` parser and entry point.

Adding a command: write `colab_sd/cli/<name>.py` with `add_parser(subparsers) -> ArgumentParser` (setting
`handler=` through `set_defaults`; heavy imports only inside the handler) and add the module to `COMMANDS`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from .._version import __version__
from ..errors import ColabSDError
from . import app, batch, download, generate, info, models, recreate, search, upscale
from .common import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, fail, setup_logging

# Commands in help order: one line each.
COMMANDS = [
    download,
    models,
    generate,
    batch,
    search,
    recreate,
    info,
    upscale,
    app,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colab-sd",
                                     description="Stable Diffusion workstation: verified model downloads and generation.")
    parser.add_argument("--version", action="version", version=f"colab-sd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show detailed logs (and tracebacks) on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    for sub in set(subparsers.choices.values()):
        # `-v` after the command too (`colab-sd download -v URL`); SUPPRESS keeps a `-v` given before it.
        if not {"-v", "--verbose"} & set(sub._option_string_actions):  # unless a command defines its own
            sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="show detailed logs (and tracebacks) on stderr")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run `colab-sd` with `argv` (default: sys.argv[1:]); returns the exit status (0, 1, 2 usage, 130 interrupted,
    141 when the reader of stdout went away, as in `colab-sd info *.png | head`)."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # output still buffered meets a closed pipe here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """The reader closed early: end quietly, as `yes | head` does. Python's own flush at exit would hit the closed
    pipe again and print 'Exception ignored ... BrokenPipeError', so stdout now points at devnull (the recipe of
    the Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured in tests)
        pass


def _run(argv: Optional[list[str]]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    setup_logging(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except ColabSDError as err:
        fail(err)
        return EXIT_FAILED
