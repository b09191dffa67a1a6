"""Batches on Ray: a local Ray with two CPUs (what CI has), two actors, pixels identical to lone generate."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

ray = pytest.importorskip("ray")

import colab_sd  # noqa: E402
import tiny_models  # noqa: E402
from colab_sd.events import Collect  # noqa: E402
from colab_sd.generation import read_png_parameters  # noqa: E402
from colab_sd.generation.batch_jobs import JobDone, JobStep, WorkerState  # noqa: E402
from colab_sd.generation.batch_worker import PROVENANCE_KEY  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")]

SMALL = dict(model="tiny-sd1", steps=2, width=64, height=64)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return tiny_models.copy_library(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with two CPUs, as in CI, started the way `connect` starts one (a patient agent wait)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to the internet from the tests
    from colab_sd.generation.batch_ray import LOCAL_SYSTEM_CONFIG

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG)
    yield
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here and so in each actor (see tests/test_batch.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def offline(library, monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(library / "_configs"))
    monkeypatch.setenv("COLAB_SD_HOME", str(library))
    monkeypatch.setenv("COLAB_SD_OUTPUTS", str(tmp_path / "outputs"))


def test_jsonl_batch_on_ray_is_pixel_identical_to_lone_generate(cluster, tmp_path):
    from PIL import Image

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(line) for line in [
        {"prompt": "a red house", "seed": 31},
        {"prompt": "a blue tree", "seed": 32, "sampler": "Euler a"},
        {"prompt": "a cat", "seed": 33, "negative_prompt": "blurry", "cfg": 4},
    ]))
    events = Collect()
    result = colab_sd.generate_batch(jobs, ray="auto", workers=2, device="cpu", on_event=events, **SMALL)

    assert result.ok and result.backend == "ray" and result.workers == 2
    ready = [e for e in events.of(WorkerState) if e.state == "ready"]
    assert len(ready) == 2 and all(e.pid != os.getpid() and e.device == "cpu" and e.node for e in ready)
    assert sorted(e.index for e in events.of(JobDone)) == [0, 1, 2]
    assert {(e.index, e.step) for e in events.of(JobStep)} >= {(0, 2), (1, 2), (2, 2)}
    outputs = tmp_path / "outputs"
    for job in result.jobs:
        path = job.paths[0]
        assert path.startswith(str(outputs))  # returned to the driver and written here
        lone = colab_sd.generate(job.request.replace(save=False))
        with Image.open(path) as img:
            assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(lone.images[0]))
            note = json.loads(img.text[PROVENANCE_KEY])
        assert read_png_parameters(path) == lone.parameters[0]
        assert note["job"] == job.index and note["device"] == "cpu"
