"""The `colab-sd` command: one module per command (download, models, generate, app); `main` in `main.py`."""
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail
from .main import COMMANDS, build_parser, main

__all__ = ["main", "build_parser", "COMMANDS", "fail", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]
