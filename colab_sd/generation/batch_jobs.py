"""A batch's bookkeeping, shared by the local process pool and Ray: events, who holds which job, retries, results.

Plain Python (no torch, no Ray): the rules are tested without starting a process.

A job is one `GenerationRequest` (it may make several images: batch size × count). A job whose worker dies, or
which fails with a GenerationError (out of memory), goes back to the queue once, marked so that another worker
takes it while one is alive; a second failure is reported. Bad input (InputError, NotFoundError) is not retried:
it would fail the same way anywhere.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..events import Event

# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class WorkerState(Event):
    """A worker started ("ready"), died ("died": killed, out of host memory) or stopped ("stopped")."""

    worker: int
    device: str
    state: str
    pid: Optional[int] = None
    node: Optional[str] = None
    status = "info"


@dataclass(frozen=True)
class JobStep(Event):
    """Step `step` of `total` of image `image` of job `index`, on `worker` (`device`: "cuda:1", "cpu")."""

    index: int
    worker: int
    device: str
    step: int
    total: int
    image: int = 0
    status = "progress"


@dataclass(frozen=True)
class JobDone(Event):
    """Job `index` finished: its PNGs (`paths`) and seeds; `attempt` 2 means it was retried after a failure."""

    index: int
    worker: int
    device: str
    paths: tuple
    seeds: tuple
    attempt: int = 1
    status = "completed"


@dataclass(frozen=True)
class JobFailed(Event):
    """Job `index` failed on `worker`; `retry` True when it went back to the queue for another worker."""

    index: int
    worker: Optional[int]
    message: str
    retry: bool = False
    status = "error"


@dataclass(frozen=True)
class BatchDone(Event):
    """The whole batch: jobs done, failed, not run (cancelled), and wall time in seconds."""

    done: int
    failed: int
    not_run: int
    images: int
    seconds: float
    cancelled: bool = False
    status = "info"


# ---------------------------------------------------------------------------------------------- results


@dataclass
class JobResult:
    """What became of one request of the batch. `status`: "done", "failed", "cancelled" or "pending"."""

    index: int
    request: Any  # the GenerationRequest, seed resolved
    status: str = "pending"
    paths: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    parameters: list = field(default_factory=list)
    worker: Optional[int] = None
    device: Optional[str] = None
    attempts: int = 0
    error: Optional[str] = None


@dataclass
class BatchResult:
    """Every job in request order; `paths` lists every saved PNG in that order."""

    jobs: list
    cancelled: bool = False
    seconds: float = 0.0
    backend: str = "local"
    workers: int = 1

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for job in self.jobs for p in job.paths]

    @property
    def failed(self) -> list:
        return [job for job in self.jobs if job.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(job.status == "done" for job in self.jobs)

    def images(self) -> list:
        """The saved images, opened with PIL (loaded on demand: a batch may hold hundreds)."""
        from PIL import Image

        out = []
        for path in self.paths:
            with Image.open(path) as img:
                img.load()
                out.append(img)
        return out

    def summary(self) -> str:
        done = sum(job.status == "done" for job in self.jobs)
        text = (f"{len(self.paths)} image(s) from {done}/{len(self.jobs)} job(s) on {self.workers} {self.backend} "
                f"worker(s) in {self.seconds:.1f} s")
        if self.failed:
            text += f"; {len(self.failed)} failed"
        if self.cancelled:
            text += "; cancelled (finished images kept)"
        return text


# ---------------------------------------------------------------------------------------------- ledger

RETRIED_ERRORS = ("GenerationError",)  # out of memory and other run failures may pass on another worker


class Ledger:
    """Which job is queued, held by which worker, done or failed; retries each job once, on another worker."""

    def __init__(self, requests: list, retries: int = 1):
        self.results = [JobResult(index=i, request=r) for i, r in enumerate(requests)]
        self.pending = collections.deque(range(len(requests)))
        self.running: dict[int, int] = {}  # worker → job index
        self.avoid: dict[int, set] = collections.defaultdict(set)  # job → workers that failed it
        self.retries = retries
        self.cancelled = False

    def take(self, worker: int, live: set) -> Optional[int]:
        """The next job for a free `worker`, or None. A job is not given back to a worker that failed it while
        another live worker could take it."""
        if self.cancelled:
            return None
        for index in list(self.pending):
            others = live - self.avoid[index] - {worker}
            if worker not in self.avoid[index] or not others:
                self.pending.remove(index)
                self.running[worker] = index
                job = self.results[index]
                job.attempts += 1
                job.worker = worker
                return index
        return None

    def holding(self, worker: int) -> Optional[int]:
        return self.running.get(worker)

    def done(self, worker: int, index: int, paths: list, seeds: list, parameters: list, device: str) -> JobResult:
        self.running.pop(worker, None)
        job = self.results[index]
        job.status, job.paths, job.seeds, job.parameters = "done", list(paths), list(seeds), list(parameters)
        job.worker, job.device, job.error = worker, device, None
        return job

    def stopped(self, worker: int, index: int, paths: list = (), seeds: list = ()) -> JobResult:
        """The job was interrupted by a cancel; images it finished before are kept."""
        self.running.pop(worker, None)
        job = self.results[index]
        job.status, job.paths, job.seeds = "cancelled", list(paths), list(seeds)
        return job

    def failed(self, worker: Optional[int], index: int, message: str, retry: bool) -> bool:
        """Record a failure; True when the job goes back to the queue (first failure of a retryable kind)."""
        if worker is not None:
            self.running.pop(worker, None)
            self.avoid[index].add(worker)
        job = self.results[index]
        job.error = message
        if retry and job.attempts <= self.retries and not self.cancelled:
            self.pending.appendleft(index)  # retried next, so a late failure does not wait behind the whole queue
            return True
        job.status = "failed"
        return False

    def lost(self, worker: int) -> Optional[int]:
        """The job a dead worker held (None when it was idle)."""
        return self.running.get(worker)

    def cancel(self) -> list[int]:
        """Stop handing out jobs; those never started are marked cancelled and returned."""
        self.cancelled = True
        never = list(self.pending)
        self.pending.clear()
        for index in never:
            self.results[index].status = "cancelled"
        return never

    @property
    def settled(self) -> bool:
        return not self.pending and not self.running

    def counts(self) -> dict:
        tally = collections.Counter(job.status for job in self.results)
        return {"done": tally["done"], "failed": tally["failed"],
                "not_run": tally["cancelled"] + tally["pending"],
                "images": sum(len(job.paths) for job in self.results)}
