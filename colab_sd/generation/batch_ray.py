"""Past one machine: the same jobs on Ray actors, one GPU each (one CPU each where there is no GPU).

Ray is an optional extra (`pip install colab-sd[ray]`), imported only here, only when `ray=` is given. Each actor
loads the pipeline once, runs jobs with the same `run_job` as the local workers and returns each image as PNG
bytes (parameters text and provenance note included) to the driver, which writes them into its outputs folder:
no shared folder is needed between machines. Models must be at the same path on every node (a shared disk) or be
Hugging Face repo ids. Per-step progress comes back through a `ray.util.queue.Queue`.

A job whose actor dies (node lost, out of memory, killed) is retried once on another actor, as on one machine.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable, Optional

from ..errors import InputError
from ..events import Info
from .batch_jobs import JobDone, JobFailed, JobStep, Ledger, RETRIED_ERRORS, WorkerState
from .batch_worker import run_job, set_threads, write_png

log = logging.getLogger("colab_sd.generation")

POLL_SECONDS = 0.2
# Environment a worker needs to find models, configs and the Hub as the driver does.
_FORWARD_PREFIXES = ("COLAB_SD_", "HF_", "HUGGINGFACE_", "CIVITAI_ENDPOINT")


class BatchActor:
    """A Ray actor (wrapped with ray.remote by RayPool): a pipeline that stays loaded between jobs."""

    def __init__(self, rank: int, threads: int):
        import ray

        set_threads(threads)  # Ray starts workers with OMP_NUM_THREADS set to their CPU share
        self.rank = rank
        gpus = ray.get_gpu_ids()
        self.device = f"cuda:{gpus[0]}" if gpus else "cpu"
        self.stop = threading.Event()

    def info(self) -> tuple:
        return os.getpid(), socket.gethostname(), self.device

    def run(self, index: int, request, attempt: int, progress) -> dict:
        def on_step(step, total, image):
            try:
                progress.put_nowait((index, self.rank, self.device, step, total, image))
            except Exception:  # progress is a nicety; a full or gone queue never stops the image
                pass

        return run_job(request, index, self.rank, self.device, attempt, self.stop, on_step, encode=True)

    def cancel(self) -> None:
        self.stop.set()


# The raylet waits a fixed time for its agents to register, then aborts the node. On a busy 2-core machine
# (a Colab CPU runtime, CI) the agent took 19-26 s against the default wait, so a local start waits longer.
# `agent_register_timeout_ms` is a Ray system config (RAY_agent_register_timeout_ms); it only applies to a
# cluster this process starts, never to one it joins.
LOCAL_SYSTEM_CONFIG = {"agent_register_timeout_ms": 180_000}


def connect(address) -> bool:
    """Start or join Ray; True when this call started it (and so shuts it down after the batch)."""
    import ray

    if ray.is_initialized():
        return False
    target = None if address in (True, "local") else str(address)
    try:
        starts_one = target is None and not os.environ.get("RAY_ADDRESS")  # RAY_ADDRESS: init joins that one
        extra = {"_system_config": LOCAL_SYSTEM_CONFIG} if starts_one else {}
        ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 **extra)
    except ConnectionError as err:
        raise InputError(f"cannot reach a Ray cluster at {address}: start one (`ray start --head`) or use "
                         f"--ray local ({err})".splitlines()[0]) from None
    return True


class RayPool:
    """Runs a Ledger's jobs on Ray actors; `run()` returns True when cancelled."""

    def __init__(self, ledger: Ledger, address, workers, device: Optional[str], threads: int, emit: Callable,
                 cancel):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError("Ray is not installed: pip install 'colab-sd[ray]'") from None
        self.ledger, self.address, self.workers_wanted, self.device = ledger, address, workers, device
        self.threads, self.emit, self.cancel_source = threads, emit, cancel
        self.actors: dict = {}
        self.futures: dict = {}
        self.size = 0

    def _plan(self, ray) -> tuple[int, bool]:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = self.device != "cpu" and gpus > 0
        if str(self.device or "").startswith("cuda") and not gpus:
            raise InputError("device cuda was asked for but the Ray cluster has no GPU: use --device cpu")
        if self.workers_wanted in (None, "all", "auto"):
            count = gpus if use_gpu else max(1, len([n for n in ray.nodes() if n.get("Alive")]))
        else:
            count = int(self.workers_wanted)
            if count < 1:
                raise InputError(f"workers must be at least 1, not {count}")
        return count, use_gpu

    def _start_actor(self, ray, rank: int) -> None:
        env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES)}
        options = dict(num_cpus=1, num_gpus=1 if self.use_gpu else 0, max_concurrency=2,  # run + cancel
                       runtime_env={"env_vars": env})
        actor = ray.remote(BatchActor).options(**options).remote(rank, self.threads)
        self.actors[rank] = actor
        try:
            pid, node, device = ray.get(actor.info.remote())
        except ray.exceptions.RayError as err:
            self.actors.pop(rank)
            self.emit(Info(f"Ray worker {rank} did not start: {str(err).splitlines()[0]}"))
            return
        self.emit(WorkerState(worker=rank, device=device, state="ready", pid=pid, node=node))
        self.devices[rank] = device

    def run(self) -> bool:
        import ray
        from ray.util.queue import Queue

        started_ray = connect(self.address)
        try:
            count, self.use_gpu = self._plan(ray)
            self.size, self.devices = count, {}
            self.progress = Queue(actor_options={"num_cpus": 0})
            for rank in range(count):
                self._start_actor(ray, rank)
            self.replacements = count
            self._loop(ray)
        finally:
            for actor in self.actors.values():
                ray.kill(actor)
            progress = getattr(self, "progress", None)
            if progress is not None:
                progress.shutdown()  # the queue is an actor too
            if started_ray:
                ray.shutdown()
        return self.ledger.cancelled

    def _loop(self, ray) -> None:
        while not self.ledger.settled:
            try:
                if self.cancel_source is not None and _is_set(self.cancel_source) and not self.ledger.cancelled:
                    self._cancel()
                self._feed(ray)
                if not self.futures:
                    if not self._replace(ray):
                        break
                    continue
                ready, _ = ray.wait(list(self.futures), num_returns=1, timeout=POLL_SECONDS)
                self._progress()
                for future in ready:
                    self._collect(ray, future)
            except KeyboardInterrupt:
                self._cancel()
        self._progress()

    def _cancel(self) -> None:
        never = self.ledger.cancel()
        for actor in self.actors.values():
            actor.cancel.remote()
        self.emit(Info(f"cancelling: {len(never)} job(s) not started; finished images are kept"))

    def _feed(self, ray) -> None:
        busy = {rank for rank, _ in self.futures.values()}
        for rank, actor in list(self.actors.items()):
            if rank in busy:
                continue
            index = self.ledger.take(rank, set(self.actors))
            if index is not None:
                job = self.ledger.results[index]
                future = actor.run.remote(index, job.request, job.attempts, self.progress)
                self.futures[future] = (rank, index)

    def _progress(self) -> None:
        try:
            items = self.progress.get_nowait_batch(self.progress.qsize())
        except Exception:
            return
        for index, rank, device, step, total, image in items:
            self.emit(JobStep(index=index, worker=rank, device=device, step=step, total=total, image=image,
                              job=f"job {index}"))

    def _collect(self, ray, future) -> None:
        rank, index = self.futures.pop(future)
        device = self.devices.get(rank, "?")
        try:
            outcome = ray.get(future)
        except ray.exceptions.RayActorError as err:
            self.actors.pop(rank, None)
            self.emit(WorkerState(worker=rank, device=device, state="died"))
            why = f"Ray worker {rank} ({device}) died: {str(err).splitlines()[0]}"
            retry = self.ledger.failed(rank, index, why, retry=True)
            self.emit(JobFailed(index=index, worker=rank, message=why, retry=retry, job=f"job {index}"))
            return
        if "error" in outcome:
            retry = self.ledger.failed(rank, index, outcome["error"], outcome["kind"] in RETRIED_ERRORS)
            self.emit(JobFailed(index=index, worker=rank, message=outcome["error"], retry=retry, job=f"job {index}"))
            return
        request = self.ledger.results[index].request
        paths = [write_png(data, request.outputs_dir, seed) for data, seed in zip(outcome["pngs"], outcome["seeds"])]
        if outcome.get("cancelled"):
            self.ledger.stopped(rank, index, paths, outcome["seeds"])
            return
        job = self.ledger.done(rank, index, paths, outcome["seeds"], outcome["parameters"], device)
        self.emit(JobDone(index=index, worker=rank, device=device, paths=tuple(paths), seeds=tuple(job.seeds),
                          attempt=job.attempts, job=f"job {index}"))

    def _replace(self, ray) -> bool:
        """No job running and some pending: every actor is gone. Start one more, or fail what is left."""
        if self.ledger.pending and self.replacements > 0 and not self.ledger.cancelled:
            self.replacements -= 1
            self._start_actor(ray, max(list(self.actors) + list(self.devices) + [-1]) + 1)
            if self.actors:
                return True
        for index in list(self.ledger.pending):
            self.ledger.pending.remove(index)
            self.ledger.failed(None, index, "no Ray worker left to run it", retry=False)
            self.emit(JobFailed(index=index, worker=None, message="no Ray worker left to run it", job=f"job {index}"))
        return False


def _is_set(cancel) -> bool:
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())
