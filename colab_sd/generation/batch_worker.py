"""Inside a batch worker: run one job exactly as a lone `generate` would, and save (or encode) its PNGs.

Used by the local worker processes (`worker_main`, started with torch.multiprocessing's spawn) and by the Ray
actors (`batch_ray`). Imports torch only when a worker starts.

Identical pixels: a worker calls the same `generate` with the same request and seed, on the same kind of device,
and sets torch's intra-op thread count to the one the calling process uses (`threads`), because on the CPU the
thread count changes how reductions are split and so the last bits of the result. Ray, for one, starts workers
with OMP_NUM_THREADS=1.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import time
from typing import Callable, Optional

from ..errors import ColabSDError

PROVENANCE_KEY = "colab_sd_batch"  # a PNG text chunk next to A1111's "parameters"


class Flag:
    """`is_set()` over a lock-free shared byte: a worker killed while reading it cannot leave a lock held."""

    def __init__(self, raw):
        self.raw = raw

    def is_set(self) -> bool:
        return bool(self.raw.value)


def set_threads(threads: Optional[int]) -> None:
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(int(threads))


def provenance(index: int, worker: int, device: str, seed: int, attempt: int) -> str:
    """The PNG's note on who made it; the `parameters` text stays exactly what a lone generate writes."""
    return json.dumps({"job": index, "worker": worker, "device": device, "node": socket.gethostname(),
                       "attempt": attempt, "seed": seed,
                       "reproduce": "colab_sd.generate with this PNG's parameters gives the same pixels"})


def png_bytes(image, parameters: str, note: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text(PROVENANCE_KEY, note)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=1)  # level 1: as metadata.save_png
    return buffer.getvalue()


def write_png(data: bytes, outputs_dir, seed: int) -> str:
    """Write encoded PNG bytes under the outputs folder (dated name, `.tmp` then rename: never half a file)."""
    from .metadata import output_path, outputs_root

    path = output_path(outputs_root(outputs_dir), seed)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return str(path)


def run_job(request, index: int, worker: int, device: str, attempt: int, cancel, on_step: Callable,
            outputs_dir=None, encode: bool = False) -> dict:
    """Generate one job; returns {"paths" or "pngs", "seeds", "parameters", "cancelled"} or {"error", "kind"}.

    `encode=True` returns PNG bytes (Ray: the driver writes them) instead of writing files here.
    """
    from .engine import generate
    from ..events import StepProgress

    def forward(event):
        if isinstance(event, StepProgress):
            on_step(event.step, event.total, event.image)

    try:
        # "cuda:1" is the parent's name for this worker's GPU; the worker itself sees only that one, as "cuda".
        run_on = "cuda" if device.startswith("cuda") else device
        result = generate(request.replace(save=False, on_event=forward, cancel=cancel, device=run_on))
    except ColabSDError as err:
        return {"error": str(err), "kind": type(err).__name__}
    except Exception as err:  # anything else still comes back as one line; the worker lives on
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0], "kind": type(err).__name__}
    out = {"seeds": list(result.seeds), "parameters": list(result.parameters), "cancelled": result.cancelled,
           "seconds": result.seconds}
    pngs = [png_bytes(image, text, provenance(index, worker, device, seed, attempt))
            for image, text, seed in zip(result.images, result.parameters, result.seeds)]
    if encode:
        out["pngs"] = pngs
    else:
        folder = outputs_dir or request.outputs_dir
        out["paths"] = [write_png(data, folder, seed) for data, seed in zip(pngs, result.seeds)]
    return out


def worker_main(rank: int, device: str, threads: int, conn, stop_raw, outputs_dir) -> None:
    """A local worker process: load on first job, then take jobs over `conn` until it sends None.

    Messages to the parent: ("ready", pid, device), ("step", index, step, total, image), ("result", index, dict).
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides (it sets the cancel flag), so a
    # worker finishes its step and reports instead of dying with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if device.startswith("cuda:"):
        # This process sees only its GPU, as cuda:0; nothing has touched CUDA yet in a freshly spawned process.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    set_threads(threads)
    cancel = Flag(stop_raw)
    conn.send(("ready", os.getpid(), device))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if message is None:
            return
        index, request, attempt = message
        started = time.monotonic()

        def on_step(step, total, image, index=index):
            conn.send(("step", index, step, total, image))

        outcome = run_job(request, index, rank, device, attempt, cancel, on_step, outputs_dir)
        outcome.setdefault("seconds", time.monotonic() - started)
        conn.send(("result", index, outcome))
