"""generate_batch(): many requests over every GPU of this machine, or over a Ray cluster.

    from colab_sd import generate_batch
    result = generate_batch("jobs.jsonl", workers="all")                       # one request per JSONL line
    result = generate_batch(request, prompts=["a cat", "a dog"], seeds=4)      # 2 prompts × 4 seeds = 8 jobs
    result = generate_batch(jobs, workers=2, device="cpu")                     # what CI runs
    result = generate_batch(jobs, ray="auto")                                  # a running Ray cluster

A job is one `GenerationRequest` (JSONL lines use its field names). Every seed is fixed before any worker starts, so
each image is the one a lone `generate` with the same request and seed makes, whichever worker made it; its PNG
carries that same A1111 `parameters` text plus a `colab_sd_batch` note naming the job, worker and device.

Backends: `workers=1` runs here, in this process (the notebook's loaded model is reused); more workers are
local processes (`batch_local`, one per GPU); `ray=` sends the jobs to Ray actors with one GPU each (`batch_ray`).
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from ..errors import InputError
from ..events import guard
from .batch_jobs import BatchDone, BatchResult, JobDone, JobFailed, JobResult, JobStep, Ledger, WorkerState
from .request import GenerationRequest

__all__ = ["generate_batch", "expand", "read_jobs", "read_prompts", "BatchResult", "JobResult", "JobStep",
           "JobDone", "JobFailed", "WorkerState", "BatchDone"]

# Fields a job never carries to a worker: callbacks, events and token stores stay with the caller.
_LOCAL_ONLY = ("on_event", "cancel", "tokens")


# ---------------------------------------------------------------------------------------------- the jobs


def read_jobs(path: Union[str, os.PathLike], defaults: Optional[dict] = None) -> list[GenerationRequest]:
    """One request per non-blank line of a JSONL file; `defaults` fill what a line leaves out.

    Raises InputError naming the line for a line that is not a JSON object or has an unknown or bad field.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"jobs file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read jobs file {path}: {err}") from None
    requests = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except ValueError as err:
            raise InputError(f"{path.name} line {number} is not JSON ({err.msg}): write one request per line, "
                             f'like {{"prompt": "a cat", "seed": 1}}') from None
        if not isinstance(fields, dict):
            raise InputError(f"{path.name} line {number}: a JSON object with request fields was expected")
        try:
            requests.append(GenerationRequest.from_fields(**{**(defaults or {}), **fields}).validate())
        except InputError as err:
            raise InputError(f"{path.name} line {number}: {err}") from None
    if not requests:
        raise InputError(f"{path.name} holds no requests: write one JSON object per line")
    return requests


def read_prompts(path: Union[str, os.PathLike]) -> list[str]:
    """One prompt per non-blank line."""
    try:
        prompts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise InputError(f"prompts file not found: {path}") from None
    if not prompts:
        raise InputError(f"{path} holds no prompts: write one per line")
    return prompts


def expand(requests=None, *, prompts: Optional[Iterable[str]] = None, seeds: Union[int, Iterable[int], None] = None,
           **fields) -> list[GenerationRequest]:
    """The batch's requests: a list (of GenerationRequest or dicts), a JSONL path, or one request × prompts × seeds.

    `seeds` is a count (consecutive seeds from the request's seed, or from a random one when it is -1) or a list.
    `fields` apply to every request where it leaves them out (for a JSONL file) or override them (otherwise).
    """
    if isinstance(requests, (str, os.PathLike)):
        return read_jobs(requests, fields)
    if requests is None or isinstance(requests, (GenerationRequest, dict)):
        base = requests if isinstance(requests, GenerationRequest) else None
        extra = requests if isinstance(requests, dict) else {}
        base = GenerationRequest.from_fields(base, **{**extra, **fields}).validate()
        prompt_list = list(prompts) if prompts is not None else [base.prompt]
        seed_list = _seed_list(base.seed, seeds)
        return [base.replace(prompt=p, seed=s) for p in prompt_list for s in seed_list]
    out = []
    for item in requests:
        if isinstance(item, GenerationRequest):
            out.append(GenerationRequest.from_fields(item, **fields).validate())
        elif isinstance(item, dict):
            out.append(GenerationRequest.from_fields(**{**fields, **item}).validate())
        else:
            raise InputError(f"a batch takes GenerationRequests or dicts of fields, not {type(item).__name__}")
    if prompts is not None or seeds is not None:
        prompt_list = list(prompts) if prompts is not None else None
        out = [r.replace(prompt=p) for r in out for p in (prompt_list or [r.prompt])]
        out = [r.replace(seed=s) for r in out for s in _seed_list(r.seed, seeds)]
    if not out:
        raise InputError("the batch is empty: give at least one request")
    return out


def _seed_list(seed: int, seeds) -> list[int]:
    if seeds is None:
        return [seed]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise InputError(f"seeds must be a count of at least 1, not {seeds}")
        start = seed if seed >= 0 else secrets.randbelow(2**32)
        return [start + i for i in range(seeds)]
    return [int(s) for s in seeds]


def prepare(requests: list[GenerationRequest], outputs_dir=None) -> list[GenerationRequest]:
    """Fix what must be the same wherever a job runs: the seed, absolute models and outputs folders.

    A model is looked up here once per name, so a missing one fails before any worker starts.
    """
    from ..library import models_root
    from .metadata import outputs_root
    from .models import resolve_model

    checked, out = set(), []
    for req in requests:
        if req.init_image is not None and not isinstance(req.init_image, (str, os.PathLike)):
            raise InputError("in a batch, init_image must be a file path (a PIL image cannot go to other workers)")
        req = req.replace(seed=req.seed if req.seed >= 0 else secrets.randbelow(2**32),
                          models_dir=str(models_root(req.models_dir).resolve()),
                          outputs_dir=str(outputs_root(req.outputs_dir or outputs_dir).resolve()),
                          **{name: None for name in _LOCAL_ONLY})
        key = (str(req.model), req.models_dir)
        if key not in checked and isinstance(req.model, (str, os.PathLike)):
            resolve_model(req.model, req.models_dir, prediction=req.prediction)
            checked.add(key)
        out.append(req)
    return out


# ---------------------------------------------------------------------------------------------- devices


def plan_devices(workers, device: Optional[str]) -> list[str]:
    """One device name per worker: "cuda:0", "cuda:1"… round robin over the GPUs, or "cpu".

    `workers` "all" is one per GPU, or 1 without a GPU (CPU workers share the same cores; ask for N to force).
    """
    import torch

    gpus = torch.cuda.device_count() if device in (None, "", "cuda") or str(device).startswith("cuda") else 0
    if str(device or "").startswith("cuda") and gpus == 0:
        raise InputError("device cuda was asked for but this machine has no CUDA GPU: use --device cpu "
                         "(on Kaggle: Settings → Accelerator → GPU T4 ×2)")
    if workers in (None, "all", "auto"):
        count = max(gpus, 1)
    else:
        try:
            count = int(workers)
        except (TypeError, ValueError):
            raise InputError(f"workers must be a number or 'all', not {workers!r}") from None
        if count < 1:
            raise InputError(f"workers must be at least 1, not {count}")
    if gpus:
        return [f"cuda:{i % gpus}" for i in range(count)]
    return ["cpu"] * count


# ---------------------------------------------------------------------------------------------- running


def generate_batch(requests=None, *, prompts=None, seeds=None, workers="all", device: Optional[str] = None,
                   ray=None, outputs_dir=None, on_event: Optional[Callable] = None, cancel=None,
                   threads: Optional[int] = None, **fields) -> BatchResult:
    """Run many generation requests; returns a BatchResult (jobs in request order, every saved PNG).

    `requests`: a list of GenerationRequest / dicts, a JSONL path, or one request (or just `fields`) to cross with
    `prompts` and `seeds` (a count or a list). `workers`: a number or "all" (default: one per GPU, 1 without a GPU;
    1 runs in this process). `device`: "cuda"/"cpu".
    `ray`: None (this machine), "local" (start Ray here), "auto" or an address ("ray://host:10001"): Ray actors.
    `cancel`: a threading.Event (or a callable) that stops every worker; finished images are kept.
    `threads`: torch threads per worker (default: this process's count, which keeps CPU results identical).
    Events to `on_event`: WorkerState, JobStep (per step, with worker and device), JobDone, JobFailed, BatchDone.
    Raises InputError / NotFoundError before any worker starts for bad requests or a missing model.
    """
    emit = guard(on_event)
    if device and not str(device).startswith(("cuda", "cpu")):
        raise InputError(f"unknown device {device!r} for a batch: use cuda or cpu")
    jobs = prepare(expand(requests, prompts=prompts, seeds=seeds, **fields), outputs_dir)
    if device:
        jobs = [job.replace(device=device) for job in jobs]
    import torch

    threads = threads or torch.get_num_threads()
    ledger = Ledger(jobs)
    started = time.monotonic()
    if ray:
        from .batch_ray import RayPool

        pool = RayPool(ledger, ray, workers, device, threads, emit, cancel)
        backend, count = "ray", None
    else:
        devices = plan_devices(workers, device)
        count = len(devices)
        if count == 1:
            from .batch_inline import InlineRunner

            pool, backend = InlineRunner(ledger, devices[0], emit, cancel), "inline"
        else:
            from .batch_local import LocalPool

            pool, backend = LocalPool(ledger, devices, threads, emit, cancel), "local"
    cancelled = pool.run()
    count = count or getattr(pool, "size", 1)
    seconds = time.monotonic() - started
    emit(BatchDone(seconds=round(seconds, 2), cancelled=cancelled, **ledger.counts()))
    return BatchResult(jobs=ledger.results, cancelled=cancelled, seconds=seconds, backend=backend, workers=count)
