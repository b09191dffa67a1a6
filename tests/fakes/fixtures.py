"""pytest fixtures for the source tests: started fakes wired into the environment, model-shaped bytes.

Import the ones a module uses (`from fakes.fixtures import civitai, hub, drive, lora_bytes`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from safetensors_factory import (make_checkpoint, make_controlnet, make_embedding, make_lora, make_upscaler,
                                 make_vae)

from .civitai import FakeCivitai
from .gdrive import FakeDrive
from .hf_hub import FakeHub


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def model_bytes(tmp_path_factory):
    """Real model-shaped files (from the probe's factory), read once: {name: bytes}."""
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
    with FakeCivitai() as fake:
        monkeypatch.setenv("CIVITAI_ENDPOINT", fake.base)
        yield fake


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.base)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield fake


@pytest.fixture(scope="session")
def drive_cert_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fake-google-cert")


@pytest.fixture
def drive(monkeypatch, drive_cert_dir, tmp_path):
    with FakeDrive(drive_cert_dir) as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # gdown must not touch the real home
        yield fake
