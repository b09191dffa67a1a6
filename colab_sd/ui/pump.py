"""Run slow work in a worker thread while the calling (main) thread applies its messages to widgets.

Why: in Colab a widget value set from a background thread may never reach the browser
(colabtools #3373), while values set by the main thread during a cell or a button callback are
sent at once. So the button callback stays on the main thread, pumping messages from a queue into
the widgets until the worker is done. The kernel is busy meanwhile (clicks wait), so cancelling is
Colab's stop button: it raises KeyboardInterrupt here, which sets the `cancel` event for the worker.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

log = logging.getLogger("colab_sd.ui")

_DONE = object()

Work = Callable[[Callable[[Any], None], threading.Event], None]


def pump(work: Work, handle: Callable[[Any], None], *, cancel: Optional[threading.Event] = None,
         on_interrupt: Optional[Callable[[], None]] = None, poll: float = 0.1, grace: float = 30.0) -> bool:
    """Run `work(emit, cancel)` in a thread; call `handle(message)` here for each message it emits.

    Returns True when the user interrupted (KeyboardInterrupt), False otherwise. After an interrupt,
    messages keep being applied while the worker winds down (at most `grace` seconds, or until a
    second interrupt), so the rows show what really happened (cancelled, partial file kept).
    An exception escaping `work` is re-raised here; one raised by `handle` is logged and skipped.
    """
    cancel = cancel or threading.Event()
    messages: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work(messages.put, cancel)
        except BaseException as err:  # handed to the main thread, which decides what to show
            failure.append(err)
        finally:
            messages.put(_DONE)

    worker = threading.Thread(target=run, name="colab_sd-worker", daemon=True)
    worker.start()
    interrupted = False
    deadline: Optional[float] = None

    def interrupt() -> None:
        nonlocal interrupted, deadline
        interrupted = True
        cancel.set()
        deadline = time.monotonic() + grace
        if on_interrupt is not None:
            on_interrupt()

    while True:
        try:
            timeout = poll if deadline is None else min(poll, deadline - time.monotonic())
            if timeout <= 0:
                log.warning("the worker did not stop within %.0f s of the interrupt; leaving it", grace)
                break
            message = messages.get(timeout=timeout)
            if message is _DONE:
                break
            try:
                handle(message)
            except Exception:  # a widget glitch must not abandon a running download
                log.debug("updating the widgets failed", exc_info=True)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            if interrupted:
                break  # a second stop: stop waiting for the worker
            interrupt()
    if failure and not isinstance(failure[0], KeyboardInterrupt):
        raise failure[0]
    return interrupted
