"""What every `colab-sd` command shares: exit codes, the one-line error printer, logging with redaction."""
from __future__ import annotations

import logging
import sys

from ..tokens import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`


def fail(message: object) -> None:
    """One line on stderr, token-free."""
    print(f"colab-sd: error: {redact(message)}", file=sys.stderr, flush=True)


def setup_logging(verbose: bool) -> None:
    """`[colab_sd] LEVEL message` on stderr; DEBUG with --verbose, WARNING otherwise; tokens scrubbed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactFormatter("[colab_sd] %(levelname)s %(message)s"))
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("colab_sd")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


class RedactFilter(logging.Filter):
    """Last line of defence: scrub tokens from every record the CLI prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RedactFormatter(logging.Formatter):
    """Scrubs the whole formatted record, the traceback of --verbose included (the filter runs before it exists)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
