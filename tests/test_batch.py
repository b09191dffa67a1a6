"""Batches on two CPU worker processes (what CI has): identical pixels, a killed worker, a cancel.

Real worker processes (torch.multiprocessing spawn) with real tiny diffusers pipelines; each image is compared
bit for bit with a lone `colab_sd.generate` of the same request in this process.
"""
from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import colab_sd  # noqa: E402
from colab_sd.errors import InputError, NotFoundError  # noqa: E402
from colab_sd.events import Collect  # noqa: E402
from colab_sd.generation import GenerationRequest, read_png_parameters  # noqa: E402
from colab_sd.generation.batch import expand, read_jobs  # noqa: E402
from colab_sd.generation.batch_jobs import JobDone, JobFailed, JobStep, Ledger, WorkerState  # noqa: E402
from colab_sd.generation.batch_worker import PROVENANCE_KEY  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"), pytest.mark.usefixtures("offline")]

SMALL = dict(model="tiny-sd1", steps=2, width=64, height=64)


def png_pixels(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def assert_same_as_lone_generate(index, request, paths):
    """The batch's PNGs have the pixels and the parameters text of a lone generate in this process."""
    lone = colab_sd.generate(request.replace(save=False))
    assert len(paths) == len(lone.images)
    for path, image, text in zip(paths, lone.images, lone.parameters):
        assert np.array_equal(png_pixels(path), np.asarray(image)), f"job {index}: pixels differ"
        assert read_png_parameters(path) == text


def assert_job_matches(job):
    assert_same_as_lone_generate(job.index, job.request, job.paths)


def write_jobs(path, lines):
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- two workers


def test_jsonl_batch_on_two_workers_is_pixel_identical_to_lone_generate(tmp_path, capsys):
    """`colab-sd batch JOBS.jsonl --workers 2 --device cpu` with generate options filling what lines leave out."""
    from colab_sd.cli import main

    lines = [
        {"prompt": "a red house", "seed": 11},
        {"prompt": "a blue tree", "seed": 12, "sampler": "Euler a"},
        {"prompt": "a cat <lora:tiny-kohya:0.8>", "seed": 13, "negative_prompt": "blurry"},
        {"prompt": "a dog", "seed": 14, "cfg": 5, "steps": 3},  # a line's fields win over the options
    ]
    jobs = write_jobs(tmp_path / "jobs.jsonl", lines)
    code = main(["batch", str(jobs), "--workers", "2", "--device", "cpu", "--model", "tiny-sd1", "--steps", "2",
                 "--width", "64", "--height", "64", "--cfg", "6", "--json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done = {e["index"]: e for e in events if e["status"] == "completed"}
    assert sorted(done) == [0, 1, 2, 3]
    assert {e["worker"] for e in done.values()} == {0, 1}  # both processes took jobs from the queue
    ready = [e for e in events if e.get("state") == "ready"]
    assert len(ready) == 2 and os.getpid() not in {e["pid"] for e in ready}
    steps = {(e["index"], e["step"]) for e in events if e["status"] == "progress"}
    assert steps >= {(0, 1), (0, 2), (3, 3)}
    assert [e for e in events if e["status"] == "info" and "images" in e][-1]["images"] == 4
    for index, line in enumerate(lines):
        request = GenerationRequest(**{**SMALL, "cfg": 6, **line})
        assert_same_as_lone_generate(index, request, done[index]["paths"])
        note = json.loads(_png_text(done[index]["paths"][0])[PROVENANCE_KEY])
        assert note["job"] == index and note["worker"] == done[index]["worker"] and note["device"] == "cpu"


def _png_text(path) -> dict:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return dict(img.text)


def test_a_killed_worker_loses_only_its_job_which_runs_again_elsewhere(tmp_path):
    events = Collect()
    pids, finished, killed = {}, {}, []

    def on_event(event):
        events(event)
        if isinstance(event, WorkerState) and event.state == "ready":
            pids[event.worker] = event.pid
        elif isinstance(event, JobDone):
            finished.setdefault(event.worker, []).append(event.index)
        elif isinstance(event, JobStep) and not killed and finished.get(event.worker):
            killed.append((event.worker, event.index, list(finished[event.worker])))
            os.kill(pids[event.worker], signal.SIGKILL)  # mid-image, on its second job

    request = GenerationRequest(prompt="a mountain at night", **SMALL)
    result = colab_sd.generate_batch(request, seeds=[21, 22, 23, 24, 25], workers=2, device="cpu", on_event=on_event)

    assert killed, "no worker reached a second job"
    worker, index, before = killed[0]
    assert any(e.state == "died" and e.worker == worker for e in events.of(WorkerState))
    assert result.ok and len(result.paths) == 5
    retried = result.jobs[index]
    assert retried.attempts == 2 and retried.worker != worker
    assert [e.retry for e in events.of(JobFailed)] == [True]
    for done_index in before:  # what the dead worker had finished is still there, untouched
        assert result.jobs[done_index].status == "done" and result.jobs[done_index].paths[0].endswith(".png")
    assert_job_matches(retried)
    assert_job_matches(result.jobs[before[0]])


def test_cancel_stops_every_worker_and_keeps_finished_images(tmp_path):
    cancel = threading.Event()
    events = Collect()

    def on_event(event):
        events(event)
        if isinstance(event, JobDone):
            cancel.set()

    request = GenerationRequest(prompt="a landscape", **{**SMALL, "steps": 4})
    result = colab_sd.generate_batch(request, prompts=["a landscape", "a portrait"], seeds=3, workers=2,
                                     device="cpu", on_event=on_event, cancel=cancel)
    assert result.cancelled and not result.ok
    statuses = [job.status for job in result.jobs]
    assert statuses.count("done") >= 1 and statuses.count("cancelled") >= 1, statuses
    for job in result.jobs:
        if job.status == "done":
            assert read_png_parameters(job.paths[0]) is not None
    stopped = {e.worker for e in events.of(WorkerState) if e.state == "stopped"}
    assert stopped == {0, 1}
    outputs = tmp_path / "outputs"
    assert not list(outputs.rglob("*.tmp"))  # never half a file
    assert sorted(outputs.rglob("*.png")) == sorted(p for job in result.jobs for p in map(type(outputs), job.paths))


# ---------------------------------------------------------------------------------------------- no processes


def test_one_worker_runs_here_and_matches_lone_generate():
    events = Collect()
    result = colab_sd.generate_batch(prompt="a green sky", seeds=2, workers=1, device="cpu", on_event=events,
                                     seed=5, **SMALL)
    assert result.backend == "inline" and result.ok and [j.request.seed for j in result.jobs] == [5, 6]
    assert {e.pid for e in events.of(WorkerState)} == {os.getpid()}
    for job in result.jobs:
        assert_job_matches(job)


def test_bad_jobs_fail_before_any_worker_starts(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": "x", "stepz": 3}\n')
    with pytest.raises(InputError, match=r"bad.jsonl line 2: unknown generation option 'stepz'"):
        read_jobs(bad, {"model": "m"})
    bad.write_text('{"prompt": "ok"}\n\n{"prompt": oops}\n')
    with pytest.raises(InputError, match=r"bad.jsonl line 3 is not JSON"):
        read_jobs(bad, {"model": "m"})
    bad.write_text('["a list"]\n')
    with pytest.raises(InputError, match="line 1: a JSON object"):
        read_jobs(bad, {"model": "m"})
    with pytest.raises(NotFoundError):
        colab_sd.generate_batch(prompt="x", workers=2, device="cpu", **{**SMALL, "model": "no-such-model"})
    with pytest.raises(InputError, match="workers must be"):
        colab_sd.generate_batch(prompt="x", workers=0, device="cpu", **SMALL)


def test_expand_crosses_prompts_and_seeds_and_fills_from_defaults(tmp_path):
    jobs = expand(GenerationRequest(model="m", seed=100), prompts=["a", "b"], seeds=3)
    assert [(j.prompt, j.seed) for j in jobs] == [("a", 100), ("a", 101), ("a", 102), ("b", 100), ("b", 101),
                                                  ("b", 102)]
    path = write_jobs(tmp_path / "j.jsonl", [{"prompt": "x", "steps": 9}, {"prompt": "y"}])
    jobs = expand(str(path), model="m", steps=4, cfg=3)
    assert [(j.prompt, j.steps, j.cfg, j.model) for j in jobs] == [("x", 9, 3.0, "m"), ("y", 4, 3.0, "m")]
    random_start = expand(None, model="m", seeds=2)
    assert random_start[1].seed == random_start[0].seed + 1 >= 1


def test_ledger_retries_once_on_another_worker_then_reports():
    ledger = Ledger(["r0", "r1"])
    assert ledger.take(0, {0, 1}) == 0 and ledger.take(1, {0, 1}) == 1
    assert ledger.failed(0, 0, "worker 0 died", retry=True)  # back to the queue
    assert ledger.take(0, {0, 1}) is None  # not to the worker that failed it while worker 1 lives
    ledger.done(1, 1, ["p1"], [1], ["t"], "cpu")
    assert ledger.take(1, {0, 1}) == 0 and ledger.results[0].attempts == 2
    assert not ledger.failed(1, 0, "died again", retry=True)  # second failure: reported
    assert ledger.results[0].status == "failed" and ledger.settled
    assert ledger.counts() == {"done": 1, "failed": 1, "not_run": 0, "images": 1}
    lone = Ledger(["r0"])
    assert lone.take(0, {0}) == 0 and lone.failed(0, 0, "oom", retry=True)
    assert lone.take(0, {0}) == 0  # the only worker left may retry it
    input_error = Ledger(["r0", "r1"])
    input_error.take(0, {0})
    assert not input_error.failed(0, 0, "bad input", retry=False)
    assert input_error.cancel() == [1] and input_error.results[1].status == "cancelled"
