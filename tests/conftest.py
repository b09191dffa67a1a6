import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers (servers, factories) by name

from servers import TestServer  # noqa: E402


@pytest.fixture
def server():
    with TestServer() as srv:
        yield srv


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty models root; the environment cannot redirect it elsewhere."""
    monkeypatch.delenv("COLAB_SD_HOME", raising=False)
    for name in ("CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
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
