"""`colab-sd batch`: a JSONL of requests, or a prompts file × seeds, over every GPU or a Ray cluster."""
from __future__ import annotations

import argparse
import sys

from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

# Generate options a batch accepts, as (flag, request field, type); a JSONL line's own fields win over them.
OPTIONS = (
    ("--model", "model", str), ("--prompt", "prompt", str), ("--negative", "negative_prompt", str),
    ("--steps", "steps", int), ("--cfg", "cfg", float), ("--sampler", "sampler", str),
    ("--schedule", "schedule", str), ("--seed", "seed", int), ("--width", "width", int), ("--height", "height", int),
    ("--batch", "batch_size", int), ("--count", "batch_count", int), ("--clip-skip", "clip_skip", int),
    ("--vae", "vae", str), ("--strength", "strength", float), ("--prediction", "prediction", str),
    ("--config", "config", str), ("--dtype", "dtype", str),
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch", help="generate many images over every GPU (or a Ray cluster)",
        description="Run a JSONL file of requests (one JSON object per line, with the Python API's field names: "
                    "model, prompt, negative_prompt, seed, steps, cfg, width, height, sampler, schedule, loras…) "
                    "or a prompts file × seeds. Generate options fill what a line leaves out. One worker per GPU; "
                    "every image is the one `colab-sd generate` with the same settings and seed makes.")
    p.add_argument("jobs", nargs="?", metavar="JOBS.jsonl", help="one request per line")
    p.add_argument("--prompts", metavar="FILE", help="one prompt per line (instead of JOBS.jsonl)")
    p.add_argument("--seeds", type=int, metavar="N", help="N consecutive seeds per prompt or line, from --seed")
    options = p.add_argument_group("generate options (as in `colab-sd generate`; a line's own fields win)")
    for flag, field, kind in OPTIONS:
        options.add_argument(flag, dest=field, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                             help=f"request field {field}")
    p.add_argument("--lora", dest="loras", action="append", default=argparse.SUPPRESS, metavar="NAME:WEIGHT",
                   help="apply a LoRA (repeatable); also any `colab-sd generate` option: --model --steps --cfg …")
    p.add_argument("--embedding", dest="embeddings", action="append", default=argparse.SUPPRESS, metavar="NAME",
                   help=argparse.SUPPRESS)
    p.add_argument("--low-vram", dest="low_vram", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--workers", default="all", metavar="N|all",
                   help="worker processes: a number, or all = one per GPU (default; 1 without a GPU)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when there is one")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on Ray: auto (a running cluster), local (start one here) or ray://host:10001")
    p.add_argument("--dir", dest="models_dir", help="models root (default: $COLAB_SD_HOME, then the host's)")
    p.add_argument("--out", dest="outputs_dir", help="outputs folder (default: $COLAB_SD_OUTPUTS, then the host's)")
    p.add_argument("--json", action="store_true", help="print one JSON event per line on stdout")
    p.set_defaults(handler=run)
    return p


def request_fields(args) -> dict:
    """The generate options given on the command line (only those: the rest stay the request's defaults)."""
    names = {field for _, field, _ in OPTIONS} | {"loras", "embeddings", "low_vram"}
    fields = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if args.models_dir:
        fields["models_dir"] = args.models_dir
    return fields


class BatchBar:
    """One tqdm bar over the jobs; the postfix shows each worker's device and step; failures above the bar."""

    def __init__(self, total: int, stream):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bar = tqdm(total=total, desc="batch", unit="job", file=stream, dynamic_ncols=True)
        self._workers: dict = {}

    def __call__(self, event) -> None:
        from ..events import Info
        from ..generation.batch_jobs import JobDone, JobFailed, JobStep, WorkerState

        if isinstance(event, JobStep):
            self._workers[event.worker] = f"{event.device} #{event.index} {event.step}/{event.total}"
            self._bar.set_postfix_str(" · ".join(f"w{k} {v}" for k, v in sorted(self._workers.items())))
        elif isinstance(event, JobDone):
            self._bar.update(1)
        elif isinstance(event, JobFailed):
            self._tqdm.write(f"job {event.index}: {event.message}" + (" (retrying on another worker)"
                                                                     if event.retry else ""), file=self._bar.fp)
            if not event.retry:
                self._bar.update(1)
        elif isinstance(event, WorkerState) and event.state == "died":
            self._workers.pop(event.worker, None)
        elif isinstance(event, Info):
            self._tqdm.write(event.message, file=self._bar.fp)

    def close(self) -> None:
        self._bar.close()


def run(args) -> int:
    from ..errors import InputError
    from ..events import JsonLines
    from ..generation.batch import expand, generate_batch, read_prompts

    if bool(args.jobs) == bool(args.prompts):
        raise InputError("give a JOBS.jsonl file or --prompts FILE (one of the two)")
    fields = request_fields(args)
    if args.jobs:
        requests = expand(args.jobs, **fields)
        if args.seeds:
            requests = expand(requests, seeds=args.seeds)
    else:
        requests = expand(None, prompts=read_prompts(args.prompts), seeds=args.seeds, **fields)
    listener = JsonLines(sys.stdout) if args.json else BatchBar(len(requests), sys.stderr)
    try:
        result = generate_batch(requests, workers=args.workers, device=args.device, ray=args.ray,
                                outputs_dir=args.outputs_dir, on_event=listener)
    finally:
        if isinstance(listener, BatchBar):
            listener.close()
    if not args.json:
        for path in result.paths:
            print(path, flush=True)
        print(result.summary(), file=sys.stderr, flush=True)
    if result.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_OK if not result.failed else EXIT_FAILED
