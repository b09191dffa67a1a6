"""One worker: the jobs run here, one after another, in the calling process (the notebook's loaded model and
its memory are reused; no second copy of the pipeline). Same events and PNGs as the process pool."""
from __future__ import annotations

import os

from .batch_jobs import JobDone, JobFailed, JobStep, Ledger, WorkerState
from .batch_worker import run_job


class InlineRunner:
    size = 1

    def __init__(self, ledger: Ledger, device: str, emit, cancel):
        self.ledger, self.device, self.emit = ledger, device, emit
        self.cancel = cancel if cancel is not None and hasattr(cancel, "is_set") else _CallableFlag(cancel)

    def run(self) -> bool:
        """Run every job; True when cancelled (cancel set, or KeyboardInterrupt from Colab's stop button)."""
        self.emit(WorkerState(worker=0, device=self.device, state="ready", pid=os.getpid()))
        try:
            while not self.ledger.cancelled:
                if self.cancel.is_set():
                    self.ledger.cancel()
                    break
                index = self.ledger.take(0, {0})
                if index is None:
                    break
                self._one(index)
        except KeyboardInterrupt:
            held = self.ledger.holding(0)
            if held is not None:
                self.ledger.stopped(0, held)
            self.ledger.cancel()
        self.emit(WorkerState(worker=0, device=self.device, state="stopped", pid=os.getpid()))
        return self.ledger.cancelled

    def _one(self, index: int) -> None:
        job = self.ledger.results[index]

        def on_step(step, total, image):
            self.emit(JobStep(index=index, worker=0, device=self.device, step=step, total=total, image=image,
                              job=f"job {index}"))

        outcome = run_job(job.request, index, 0, self.device, job.attempts, self.cancel, on_step)
        if "error" in outcome:
            # Retrying in the same process would meet the same memory state; a second worker does not exist here.
            self.ledger.failed(0, index, outcome["error"], retry=False)
            self.emit(JobFailed(index=index, worker=0, message=outcome["error"], job=f"job {index}"))
        elif outcome.get("cancelled"):
            self.ledger.stopped(0, index, outcome.get("paths", []), outcome.get("seeds", []))
            self.ledger.cancel()
        else:
            self.ledger.done(0, index, outcome["paths"], outcome["seeds"], outcome["parameters"], self.device)
            self.emit(JobDone(index=index, worker=0, device=self.device, paths=tuple(outcome["paths"]),
                              seeds=tuple(outcome["seeds"]), attempt=job.attempts, job=f"job {index}"))


class _CallableFlag:
    def __init__(self, source):
        self.source = source

    def is_set(self) -> bool:
        return bool(self.source()) if self.source is not None else False
