"""A Hugging Face repo id of a newer family's diffusers pipeline (`Tongyi-MAI/Z-Image-Turbo`,
`black-forest-labs/FLUX.1-schnell`, … as users type them) generates end to end, fetched from the fake Hub on
127.0.0.1 through huggingface_hub, the path SD repos take (test_generation.py covers gated and private repos).
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
import tiny_models  # noqa: E402
from colab_sd.generation import parse_parameters  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

SEED, PROMPT = 21, "a blue sky"
REPOS = {"alice/tiny-zimage-turbo": (tiny_families.build_zimage, "zimage", dict(guidance_scale=0.0,
                                                                                 max_sequence_length=512)),
         "alice/tiny-flux-schnell": (lambda: tiny_families.build_flux(schnell=True), "flux",
                                     dict(guidance_scale=0.0, max_sequence_length=256))}


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-repos")
    out = {}
    for repo, (build, family, call) in REPOS.items():
        pipe = build()
        folder = tiny_models.save_diffusers(pipe, root / repo.replace("/", "--"))
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        out[repo] = (pipe, family, call, files)
    yield root, out
    CACHE.release()


@pytest.fixture
def online(repos, monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants
    from fakes.hf_hub import FakeHub

    with FakeHub() as hub:
        for repo, (_, _, _, files) in repos[1].items():
            hub.add_repo(repo, files)
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("COLAB_SD_HOME", str(tmp_path / "models"))
        monkeypatch.setenv("COLAB_SD_CONFIGS", str(tmp_path / "configs"))
        monkeypatch.setenv("COLAB_SD_OUTPUTS", str(tmp_path / "outputs"))
        yield hub


@pytest.mark.parametrize("repo", list(REPOS))
def test_a_family_pipeline_from_a_hub_repo_id(repos, online, repo):
    pipe, family, call, _ = repos[1][repo]
    result = colab_sd.generate(model=repo, prompt=PROMPT, steps=2, width=64, height=64, seed=SEED)
    assert result.family == family and result.model == repo
    assert parse_parameters(result.parameters[0])["Model"] == repo
    fetched = {h["path"] for h in online.hits(f"/{repo}/resolve/")}
    assert any(p.endswith("transformer/diffusion_pytorch_model.safetensors") for p in fetched)
    direct = pipe(prompt=PROMPT, num_inference_steps=2, width=64, height=64, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(SEED), **call).images[0]
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.std() > 1.0 and np.abs(image - (direct * 255).round()).mean() < 0.6
