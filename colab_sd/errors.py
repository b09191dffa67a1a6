"""One error hierarchy. Every message is one line: what happened, then what to do."""


class ColabSDError(Exception):
    """Base of every error colab_sd raises on purpose; `str(err)` and `repr(err)` are safe to show a user:
    any token, signed-URL credential or Bearer value in the message is scrubbed when it is shown."""

    def __str__(self) -> str:
        from .tokens import redact  # lazy: tokens is light, but errors must import first

        return redact(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InputError(ColabSDError, ValueError):
    """The user's input (URL, option, name) cannot be used."""


class AuthError(ColabSDError):
    """The service wants a token, or rejected the one it got."""


class NotFoundError(ColabSDError):
    """The thing asked for does not exist (or is hidden from this token)."""


class DownloadError(ColabSDError):
    """A download failed after its retries; a resumable `.part` may be kept."""


class ErrorPageError(DownloadError):
    """The server sent an HTML/JSON page where the model file should have been."""


class IntegrityError(DownloadError):
    """The bytes did not match the expected size or sha256; they were not kept under the final name."""


class DiskFullError(DownloadError):
    """Not enough free space for the download."""


class DownloadCancelled(ColabSDError):
    """The download was cancelled; its `.part` is kept so that the next run resumes."""


class GenerationError(ColabSDError):
    """Image generation could not run."""
