"""Fixtures for every test: loopback servers and fakes of the services, an empty models root, model-shaped bytes.

The helpers (servers, fakes, safetensors_factory, tiny_models…) are importable by name because pyproject.toml
puts tests/ on pytest's `pythonpath`.
"""
import sys
from pathlib import Path

import pytest

from servers import TestServer

_TOKEN_VARIABLES = ("CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@pytest.fixture
def server():
    """A `TestServer` (routes scripted by the test) on 127.0.0.1."""
    with TestServer() as srv:
        yield srv


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty models root; the environment cannot redirect it elsewhere."""
    monkeypatch.delenv("COLAB_SD_HOME", raising=False)
    for name in _TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # Loopback servers only: a proxy from the environment would swallow the requests.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def _hub_online(monkeypatch):
    """Generation tests switch the Hub client offline when imported; no other test may inherit that."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


# ---------------------------------------------------------------------------------------------- service fakes


@pytest.fixture(scope="session")
def model_bytes(tmp_path_factory):
    """Real model-shaped files (from the probe's factory), read once: {name: bytes}."""
    from safetensors_factory import (make_checkpoint, make_controlnet, make_embedding, make_lora, make_upscaler,
                                     make_vae)

    folder = tmp_path_factory.mktemp("model-bytes")
    made = {
        "lora": make_lora(folder / "lora.safetensors", family="sd1"),
        "lora_xl": make_lora(folder / "lora_xl.safetensors", family="sdxl", style="locon"),
        "embedding": make_embedding(folder / "emb.safetensors", family="sd1"),
        "vae": make_vae(folder / "vae.safetensors"),
        "checkpoint_xl": make_checkpoint(folder / "ckpt_xl.safetensors", family="sdxl"),
        "controlnet": make_controlnet(folder / "cn.safetensors", family="sd1"),
        "upscaler": make_upscaler(folder / "up.safetensors", arch="realesrgan"),
    }
    data = {k: Path(v).read_bytes() for k, v in made.items()}
    data["noise"] = bytes(range(256)) * 64  # not a model at all
    return data


@pytest.fixture
def civitai(monkeypatch):
    """The CivitAI fake (API + its storage host), reached through CIVITAI_ENDPOINT."""
    from fakes.civitai import FakeCivitai

    with FakeCivitai() as fake:
        monkeypatch.setenv("CIVITAI_ENDPOINT", fake.base)
        yield fake


@pytest.fixture
def hub(monkeypatch):
    """The Hugging Face Hub fake (API + CDN), reached through HF_ENDPOINT."""
    from fakes.hf_hub import FakeHub

    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.base)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield fake


@pytest.fixture(scope="session")
def drive_cert_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fake-google-cert")


@pytest.fixture
def drive(monkeypatch, drive_cert_dir, tmp_path):
    """The Google Drive fake: an HTTPS proxy that gdown reaches at its real host names."""
    from fakes.gdrive import FakeDrive

    with FakeDrive(drive_cert_dir) as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # gdown must not touch the real home
        yield fake


# ---------------------------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A private copy of the tiny models library (tests/tiny_models.py) for one test module; its `_configs` folder is
    the config cache. A module that needs more in it (or another library) defines its own `library`, which wins."""
    import tiny_models

    return tiny_models.copy_library(tmp_path_factory.mktemp("models"))


@pytest.fixture
def offline(library, monkeypatch, tmp_path):
    """Generation without the network: the Hub client offline, the bundled configs and the models of the tiny
    `library`, outputs in the test's own folder, no Hub token. A module opts in with
    `pytestmark = [..., pytest.mark.usefixtures("offline")]` (worker processes inherit the environment)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(library / "_configs"))
    monkeypatch.setenv("COLAB_SD_HOME", str(library))
    monkeypatch.setenv("COLAB_SD_OUTPUTS", str(tmp_path / "outputs"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def offline_panel(offline, library):
    """`offline` for the notebook panels: also no last-used settings left in the library by an earlier test (the
    Generate panel would start from them)."""
    from colab_sd.ui import settings

    settings.settings_path(library).unlink(missing_ok=True)
