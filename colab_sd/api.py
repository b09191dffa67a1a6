"""`download()`: a URL in, a verified file in the right models folder out.

The sources turn a URL into RemoteFiles; the transfer engine (or a source's own fetcher) moves
the bytes; this module ties them to the models library and reports through events.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

from .errors import ColabSDError, DownloadCancelled
from .events import Cancelled, Error, Listener, Throttle
from .library import kind_dir, models_root, normalize_kind
from .remote import RemoteFile
from .tokens import TokenStore, redact, redact_url
from .transfer import TransferOptions, fetch

log = logging.getLogger("colab_sd.api")


def download(url: str, kind: Optional[str] = None, models_dir=None, name: Optional[str] = None,
             sha256: Optional[str] = None, on_event: Optional[Listener] = None, *,
             tokens: Optional[TokenStore] = None, connections: Optional[int] = None,
             cancel: Optional[threading.Event] = None, options: Optional[TransferOptions] = None) -> Path:
    """Download `url` into `<models_dir>/<kind>/` and return the final path.

    `kind` ("checkpoint", "lora", …) wins over what the source or the file says; `name` wins over
    the server's file name; `sha256` is checked when given. Events go to `on_event` (throttled,
    and a listener that raises is ignored). Raises a `ColabSDError` subclass with a one-line
    message; KeyboardInterrupt keeps the `.part` for resume, emits `cancelled` and propagates.
    """
    job = redact_url(url)
    emit = Throttle(on_event)
    kind = normalize_kind(kind)
    options = options or TransferOptions()
    if connections is not None:
        options = options.replace(connections=connections)
    remote = RemoteFile(url=url.strip(), sha256=sha256)
    folder = kind_dir(models_root(models_dir), kind or remote.kind)
    log.info("download %s kind=%s into %s", job, kind or "auto", folder)
    try:
        result = fetch(remote, folder, name=name, on_event=emit, cancel=cancel, options=options, job=job)
    except (KeyboardInterrupt, DownloadCancelled):
        emit(Cancelled(job=job))
        raise
    except ColabSDError as err:
        emit(Error(message=redact(err), job=job))
        raise
    return Path(result.path)
