"""A per-target lock file, so that two processes never write the same `.part`.

POSIX `flock` on `<name>.part.lock`; the holder removes the file when done. A waiter that wakes up
holding a lock on a file that was removed meanwhile tries again, so removal is safe.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional

from .errors import DownloadCancelled

try:
    import fcntl
except ImportError:  # Windows: no flock; the .part still protects the final name
    fcntl = None  # type: ignore[assignment]

_POLL = 0.2


class FileLock:
    """Exclusive lock on `path` as a context manager; `waited` tells whether another holder was waited for."""

    def __init__(self, path: Path, on_wait: Optional[Callable[[], None]] = None,
                 cancel: Optional[threading.Event] = None):
        self.path = Path(path)
        self._on_wait = on_wait
        self._cancel = cancel
        self._fd: Optional[int] = None
        self.waited = False

    def __enter__(self) -> "FileLock":
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.waited and self._on_wait:
                    self._on_wait()
                self.waited = True
                os.close(fd)
                self._pause()
                continue
            if self._still_ours(fd):
                self._fd = fd
                return self
            os.close(fd)  # the file was removed and maybe recreated while we waited: lock the current one

    def _still_ours(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _pause(self) -> None:
        if self._cancel is not None:
            if self._cancel.wait(_POLL):
                raise DownloadCancelled("download cancelled while waiting for another download of the same file")
        else:
            threading.Event().wait(_POLL)

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
