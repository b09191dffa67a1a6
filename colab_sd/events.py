"""The event protocol shared by the widgets, the CLI and the tests.

Events are frozen, JSON-serialisable dataclasses with a `status` field. Producers call one
listener (`on_event`); `Throttle` keeps progress to about two per second plus the final one, and
`guard` makes sure a listener that raises never breaks a download.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

log = logging.getLogger("colab_sd")

Listener = Callable[["Event"], Any]


@dataclass(frozen=True)
class Event:
    """Base of every event; `job` names what it is about (a redacted URL or a file name)."""

    job: Optional[str] = field(default=None, kw_only=True)
    status = "event"

    def to_dict(self) -> dict:
        data = {"status": self.status}
        data.update(asdict(self))
        if data.get("job") is None:
            data.pop("job")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Info(Event):
    message: str
    status = "info"


@dataclass(frozen=True)
class Progress(Event):
    """Bytes done so far; `total` is None when the server did not say."""

    downloaded: int
    total: Optional[int]
    speed: float  # bytes per second
    eta: Optional[float]  # seconds; None when the total is unknown
    unit: str = "B"
    name: Optional[str] = None  # the file's name once it is decided (the job is the link); left out of JSON when None
    status = "progress"

    @property
    def fraction(self) -> Optional[float]:
        return min(1.0, self.downloaded / self.total) if self.total else None

    def to_dict(self) -> dict:
        data = super().to_dict()
        if data.get("name") is None:
            data.pop("name", None)
        return data


@dataclass(frozen=True)
class StepProgress(Event):
    """Generation steps done so far, with an optional cheap preview (a PIL image, not serialised)."""

    step: int
    total: int
    rate: float  # steps per second (it/s)
    eta: Optional[float]
    image: int = 0  # which image of a batch count this step belongs to
    preview: Any = field(default=None, compare=False, repr=False)
    status = "progress"

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.pop("preview", None)
        data["unit"] = "step"
        data["has_preview"] = self.preview is not None
        return data


@dataclass(frozen=True)
class Completed(Event):
    path: str
    bytes: int
    sha256: Optional[str]
    skipped: bool = False  # True when a matching file was already there
    status = "completed"


@dataclass(frozen=True)
class Error(Event):
    message: str
    status = "error"


@dataclass(frozen=True)
class Cancelled(Event):
    message: str = "cancelled; the partial file is kept and the next run resumes it"
    status = "cancelled"


def guard(listener: Optional[Listener]) -> Listener:
    """Wrap a listener so that its exceptions are logged (debug) instead of breaking the producer."""
    if listener is None:
        return lambda event: None
    if getattr(listener, "_colab_sd_guarded", False):
        return listener

    def safe(event: Event) -> None:
        try:
            listener(event)
        except Exception:  # a broken progress bar must not kill a 6 GB download
            log.debug("event listener %r raised; ignoring", listener, exc_info=True)

    safe._colab_sd_guarded = True  # type: ignore[attr-defined]
    return safe


class Throttle:
    """Pass progress at most every `interval` seconds (and always at 100 %); pass other events at once.

    A progress event held back is flushed before the next non-progress event, so a listener always
    sees the last byte count before `completed`.
    """

    def __init__(self, listener: Optional[Listener], interval: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self._listener = guard(listener)
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._pending: Optional[Progress] = None
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Progress):
                now = self._clock()
                final = event.total is not None and event.downloaded >= event.total
                if final or now - self._last >= self._interval:
                    self._last = now
                    self._pending = None
                    self._listener(event)
                else:
                    self._pending = event
                return
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._listener(pending)
            self._listener(event)


class Fanout:
    """Send each event to several listeners, each guarded on its own."""

    def __init__(self, *listeners: Optional[Listener]):
        self._listeners = [guard(l) for l in listeners if l is not None]

    def __call__(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)


class JsonLines:
    """Write each event as one JSON line (the CLI's --json)."""

    def __init__(self, stream=None):
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(event.to_json() + "\n")
            stream.flush()


class TqdmBar:
    """Drive a tqdm bar (size, speed, ETA) from events; one bar per job."""

    def __init__(self, file=None, tqdm_class=None, leave: bool = True):
        if tqdm_class is None:
            from tqdm.auto import tqdm as tqdm_class
        self._tqdm = tqdm_class
        self._file = file if file is not None else sys.stderr
        self._leave = leave
        self._bars: dict[Optional[str], Any] = {}
        self._lock = threading.Lock()

    def _bar(self, event: Event):
        bar = self._bars.get(event.job)
        if bar is None:
            label = (getattr(event, "name", None) or event.job or "")[-40:]
            bar = self._tqdm(total=None, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                             file=self._file, leave=self._leave, dynamic_ncols=True)
            self._bars[event.job] = bar
        return bar

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Progress):
                bar = self._bar(event)
                if event.name and bar.desc != event.name[-40:]:
                    bar.set_description_str(event.name[-40:], refresh=False)  # the name, once known, not the link
                if event.total is not None and bar.total != event.total:
                    bar.total = event.total
                if bar.n == 0 and not bar.initial and event.downloaded > 0:
                    # The first bytes seen: on a resume that is the whole .part, there in no time. tqdm's rate is
                    # (n - initial) / elapsed, so they count as the start, not as GB/s of speed.
                    bar.initial = event.downloaded
                    bar.start_t = bar.last_print_t = bar._time()  # tqdm.close() skips bars "never shown" before start_t
                bar.n = event.downloaded
                bar.refresh()
            elif isinstance(event, Info):
                self._write(event.message)
            elif isinstance(event, (Completed, Error, Cancelled)):
                bar = self._bars.pop(event.job, None)
                if bar is not None:
                    bar.close()
                if isinstance(event, Completed):
                    self._write(f"{'already there' if event.skipped else 'saved'}: {event.path}")

    def _write(self, text: str) -> None:
        self._tqdm.write(text, file=self._file)


class Collect:
    """Keep every event in a list (tests, and the UI's history)."""

    def __init__(self):
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]


class Meter:
    """Speed and ETA from byte counts, smoothed over a short window so the ETA does not jump."""

    # Speed over less time than this is noise: the first chunk after a (re)start arrives in microseconds, and
    # dividing by that showed GB/s; such a progress says 0 B/s and no ETA yet.
    MIN_SPAN = 0.2

    def __init__(self, window: float = 3.0, clock: Callable[[], float] = time.monotonic):
        self._window = window
        self._clock = clock
        self._start = clock()
        self._samples: list[tuple[float, int]] = []

    def progress(self, done: int, total: Optional[int], *, job: Optional[str] = None, base: int = 0,
                 unit: str = "B", name: Optional[str] = None) -> Progress:
        """A Progress event for `done` units; `base` is what was already there before this run (resume)."""
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.pop(0)
        t0, d0 = self._samples[0]
        if now - t0 >= self.MIN_SPAN:
            speed = (done - d0) / (now - t0)
        else:
            elapsed = now - self._start
            speed = (done - base) / elapsed if elapsed >= self.MIN_SPAN else 0.0
        eta = (total - done) / speed if total is not None and speed > 0 else (0.0 if total is not None and done >= total else None)
        return Progress(downloaded=done, total=total, speed=round(speed, 1), eta=None if eta is None else round(eta, 1),
                        unit=unit, job=job, name=name)
