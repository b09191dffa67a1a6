"""One machine: one worker process per GPU (or N on the CPU), started with torch.multiprocessing's spawn.

Each worker loads the pipeline once (on its first job) and asks for the next job when it is free, so a fast GPU
is never held back by a slow one. The queue of jobs stays with the parent, which is what lets it know which job a
worker held when it died: a SIGKILLed or OOM-killed worker loses only that job, which is handed to another worker
once. Each worker talks over its own pipe and a cancel is one lock-free shared byte: a worker killed in the middle
of a message cannot leave a lock held that the others would wait on forever (which a shared multiprocessing.Queue
can do).

Spawn, not fork: the notebook kernel may already have touched CUDA, and a forked child of such a process dies on
its first CUDA call (accelerate #3524, #3833 on Kaggle).
"""
from __future__ import annotations

import logging
import time
from multiprocessing.connection import wait
from typing import Callable, Optional

from ..events import Info
from .batch_jobs import JobDone, JobFailed, JobStep, Ledger, RETRIED_ERRORS, WorkerState
from .batch_worker import worker_main

log = logging.getLogger("colab_sd.generation")

POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 60.0  # after a cancel: time for workers to finish their current step


class _Worker:
    def __init__(self, ctx, rank: int, device: str, threads: int, stop_raw, outputs_dir):
        self.rank, self.device = rank, device
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(rank, device, threads, child, stop_raw, outputs_dir),
                                   name=f"colab_sd-worker-{rank}", daemon=True)
        self.process.start()
        child.close()
        self.pid: Optional[int] = self.process.pid
        self.ready = False
        self.alive = True

    def send(self, message) -> bool:
        try:
            self.conn.send(message)
            return True
        except (OSError, ValueError):  # its end is gone: it died; the sentinel says so on the next poll
            return False


class LocalPool:
    """Runs a Ledger's jobs on local worker processes; `run()` returns when every job is settled."""

    def __init__(self, ledger: Ledger, devices: list[str], threads: int, emit: Callable, cancel,
                 outputs_dir=None):
        import torch.multiprocessing as mp

        self.ledger, self.devices, self.threads, self.emit = ledger, devices, threads, emit
        self.cancel_source, self.outputs_dir = cancel, outputs_dir
        self.ctx = mp.get_context("spawn")
        self.stop_raw = self.ctx.RawValue("b", 0)
        self.workers: dict[int, _Worker] = {}
        self.replacements = len(devices)  # a dead worker is replaced (while jobs remain), at most this many times
        self.stopping_since: Optional[float] = None

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        for rank, device in enumerate(self.devices):
            self.workers[rank] = _Worker(self.ctx, rank, device, self.threads, self.stop_raw, self.outputs_dir)

    def run(self) -> bool:
        """Drive the batch; True when it was cancelled. KeyboardInterrupt (Colab's stop button) cancels too."""
        self.start()
        try:
            while not self._finished():
                try:
                    self._poll()
                except KeyboardInterrupt:
                    self.request_cancel()
        finally:
            self.shutdown()
        return self.ledger.cancelled

    def _finished(self) -> bool:
        if self.ledger.settled:
            return True
        if self.stopping_since is not None and time.monotonic() - self.stopping_since > STOP_GRACE_SECONDS:
            for worker in self._live():  # a step that never ends: the finished images are already on disk
                index = self.ledger.holding(worker.rank)
                if index is not None:
                    self.ledger.stopped(worker.rank, index)
            return True
        return False

    def request_cancel(self) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self.stop_raw.value = 1
            never = self.ledger.cancel()
            self.emit(Info(f"cancelling: {len(never)} job(s) not started; running ones stop after their current "
                           f"step; finished images are kept"))

    def shutdown(self) -> None:
        for worker in self.workers.values():
            worker.send(None)
        deadline = time.monotonic() + 10
        for worker in self.workers.values():
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(5)
            if worker.alive:
                worker.alive = False
                self.emit(WorkerState(worker=worker.rank, device=worker.device, state="stopped", pid=worker.pid))
            worker.conn.close()

    # -------------------------------------------------------------------------------------- the loop

    def _live(self) -> list[_Worker]:
        return [w for w in self.workers.values() if w.alive]

    def _poll(self) -> None:
        if self.cancel_source is not None and _is_set(self.cancel_source):
            self.request_cancel()
        live = self._live()
        ready = wait([w.conn for w in live] + [w.process.sentinel for w in live], timeout=POLL_SECONDS)
        for worker in live:
            if worker.conn in ready:
                self._drain(worker)
        for worker in self._live():
            if worker.process.sentinel in ready or not worker.process.is_alive():
                self._drain(worker)  # what it sent before dying counts (a finished job stays finished)
                self._died(worker)
        if not self._live() and not self.ledger.settled:
            self._replace_or_give_up()

    def _drain(self, worker: _Worker) -> None:
        while worker.alive:
            try:
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                return
            self._handle(worker, message)

    def _handle(self, worker: _Worker, message) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready, worker.pid = True, message[1]
            self.emit(WorkerState(worker=worker.rank, device=worker.device, state="ready", pid=worker.pid))
            self._feed(worker)
        elif kind == "step":
            _, index, step, total, image = message
            self.emit(JobStep(index=index, worker=worker.rank, device=worker.device, step=step, total=total,
                              image=image, job=f"job {index}"))
        elif kind == "result":
            self._result(worker, message[1], message[2])
            self._feed_idle()  # this worker, and any waiting one if the job went back to the queue

    def _result(self, worker: _Worker, index: int, outcome: dict) -> None:
        job = self.ledger.results[index]
        if "error" in outcome:
            retry = self.ledger.failed(worker.rank, index, outcome["error"], outcome["kind"] in RETRIED_ERRORS)
            self.emit(JobFailed(index=index, worker=worker.rank, message=outcome["error"], retry=retry,
                                job=f"job {index}"))
        elif outcome.get("cancelled"):
            self.ledger.stopped(worker.rank, index, outcome.get("paths", []), outcome.get("seeds", []))
        else:
            self.ledger.done(worker.rank, index, outcome["paths"], outcome["seeds"], outcome["parameters"],
                             worker.device)
            self.emit(JobDone(index=index, worker=worker.rank, device=worker.device, paths=tuple(outcome["paths"]),
                              seeds=tuple(outcome["seeds"]), attempt=job.attempts, job=f"job {index}"))

    def _feed(self, worker: _Worker) -> None:
        """Give a free worker its next job (the parent's queue, in order; retries first)."""
        if self.ledger.holding(worker.rank) is not None or not worker.ready:
            return
        index = self.ledger.take(worker.rank, {w.rank for w in self._live()})
        if index is None:
            return
        job = self.ledger.results[index]
        if not worker.send((index, job.request, job.attempts)):
            self._died(worker)

    def _feed_idle(self) -> None:
        for worker in self._live():
            self._feed(worker)

    def _died(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        worker.alive = False
        worker.process.join(1)
        code = worker.process.exitcode
        self.emit(WorkerState(worker=worker.rank, device=worker.device, state="died", pid=worker.pid))
        index = self.ledger.lost(worker.rank)
        if index is not None:
            why = f"worker {worker.rank} ({worker.device}) died (exit code {code}: killed, or out of host memory)"
            retry = self.ledger.failed(worker.rank, index, why, retry=True)
            self.emit(JobFailed(index=index, worker=worker.rank, message=why, retry=retry, job=f"job {index}"))
        self._feed_idle()  # a retried job may go to a worker that is waiting

    def _replace_or_give_up(self) -> None:
        if self.ledger.cancelled:
            return
        if self.replacements > 0 and self.ledger.pending:
            self.replacements -= 1
            rank = max(self.workers) + 1
            device = self.devices[rank % len(self.devices)]
            self.emit(Info(f"every worker died; starting worker {rank} on {device} for the {len(self.ledger.pending)}"
                           f" job(s) left"))
            self.workers[rank] = _Worker(self.ctx, rank, device, self.threads, self.stop_raw, self.outputs_dir)
            return
        for index in list(self.ledger.pending):
            self.ledger.pending.remove(index)
            self.ledger.failed(None, index, "no worker left to run it", retry=False)
            self.emit(JobFailed(index=index, worker=None, message="no worker left to run it", job=f"job {index}"))


def _is_set(cancel) -> bool:
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())
