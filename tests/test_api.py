"""colab_sd.download(): the public entry point over every source; tokens never leak anywhere."""
import os
import subprocess
import sys

import pytest

import colab_sd
from colab_sd.errors import AuthError, ColabSDError, InputError, NotFoundError
from colab_sd.events import Collect, Completed, Error
from colab_sd.tokens import TokenStore
from fakes.civitai import FakeFile
from fakes.fixtures import file_sha256, sha256

CIVITAI_CANARY = "fake-civitai-canary-token-0123456789"
HF_CANARY = "hf_fake-canary-token-0123456789"


@pytest.fixture
def services(civitai, hub, model_bytes):
    civitai.token = CIVITAI_CANARY
    hub.token = HF_CANARY
    hub.granted = {HF_CANARY}
    civitai.add_version(model_id=6000, version_id=6001, model_name="Members", model_type="LORA", auth="redirect",
                        trained_words=["members only"],
                        files=[FakeFile(6101, "members.safetensors", model_bytes["lora"],
                                        served_name="Members_v1.safetensors")])
    civitai.add_version(model_id=7000, version_id=7001, model_name="Fresh", model_type="LORA",
                        early_access_until="2026-12-24T00:00:00.000Z",
                        files=[FakeFile(7101, "fresh.safetensors", model_bytes["lora"])])
    hub.add_repo("org/private", {"private.safetensors": model_bytes["lora_xl"]}, private=True)
    hub.add_repo("org/gated", {"gated.safetensors": model_bytes["embedding"]}, gated=True)
    return civitai, hub


URLS_OK = ["https://civitai.com/models/6000", "org/private/private.safetensors",
           "https://huggingface.co/org/gated/blob/main/gated.safetensors",
           f"https://civitai.com/api/download/models/6001?token={CIVITAI_CANARY}"]  # a user pasted the token
URLS_FAIL = ["https://civitai.com/models/7000", "https://huggingface.co/org/gated/blob/main/nope.safetensors",
             "civitai:424242"]


def _scan_tree(root):
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert CIVITAI_CANARY.encode() not in data and HF_CANARY.encode() not in data, p


def test_canary_tokens_never_leak_through_the_api(services, models):
    civitai, hub = services
    tokens = TokenStore(civitai=CIVITAI_CANARY, huggingface=HF_CANARY, use_colab=False)
    events = Collect()
    texts = []
    for url in URLS_OK:
        path = colab_sd.download(url, models_dir=models, on_event=events, tokens=tokens)
        assert path.exists()
    for url in URLS_FAIL:
        with pytest.raises(ColabSDError) as info:
            colab_sd.download(url, models_dir=models, on_event=events, tokens=tokens)
        texts += [str(info.value), repr(info.value)]
    # Wrong tokens are secrets too: they must not show in the "rejected" messages.
    # (links not downloaded yet: a link already in the library is not fetched again, whatever the token)
    for url, bad in [("civitai:6001", "fake-civitai-canary-wrong-111111"),
                     ("https://huggingface.co/org/private/blob/main/private.safetensors",
                      "hf_fakeCanaryWrongToken22222222")]:
        with pytest.raises(ColabSDError) as info:
            colab_sd.download(url, models_dir=models, on_event=events,
                              tokens=TokenStore(civitai=bad, huggingface=bad, use_colab=False))
        assert bad not in str(info.value) and bad not in repr(info.value)
    texts += [e.to_json() for e in events.events] + [repr(e) for e in events.events] + [repr(tokens)]
    for text in texts:
        assert CIVITAI_CANARY not in text and HF_CANARY not in text
    assert len(events.of(Completed)) == 4 and len(events.of(Error)) == 5
    _scan_tree(models)
    # The tokens went to their own services only.
    assert civitai.storage.auth_seen == 0 and hub.cdn.auth_seen == 0
    assert all(HF_CANARY not in str(r["headers"]) for r in civitai.requests)
    assert all(CIVITAI_CANARY not in str(r["headers"]) for r in hub.requests)


def test_canary_tokens_never_leak_through_the_cli(services, models, tmp_path):
    civitai, hub = services
    env = {**os.environ, "CIVITAI_TOKEN": CIVITAI_CANARY, "HF_TOKEN": HF_CANARY, "CIVITAI_ENDPOINT": civitai.base,
           "HF_ENDPOINT": hub.base, "NO_PROXY": "127.0.0.1,localhost", "HOME": str(tmp_path)}
    env.pop("COLAB_SD_HOME", None)
    for args in (["--json"], []):
        out = subprocess.run([sys.executable, "-m", "colab_sd.cli", "--verbose", "download", *args, "--dir",
                              str(models), *URLS_OK, *URLS_FAIL], capture_output=True, text=True, timeout=120,
                             env=env)
        assert out.returncode == 1  # some URLs failed on purpose
        both = out.stdout + out.stderr
        assert CIVITAI_CANARY not in both and HF_CANARY not in both
        assert "Early Access until 2026-12-24" in out.stderr and "Members_v1.safetensors" in both
    _scan_tree(models)


def test_returns_folder_for_multi_file_plans_and_refuses_name(services, models):
    _, hub = services
    hub.add_repo("org/pipe", {"model_index.json": b"{}", "unet/config.json": b"{}",
                              "unet/diffusion_pytorch_model.safetensors": b"w" * 64})
    with pytest.raises(InputError, match="--name and --sha256 apply to one file only"):
        colab_sd.download("org/pipe", models_dir=models, name="x.safetensors")
    path = colab_sd.download("org/pipe", models_dir=models)
    assert path.is_dir() and path == models / "checkpoint" / "pipe"


def test_source_option_takes_a_bare_version_id(services, models, model_bytes):
    from colab_sd import api

    path = api.download("6001", source="civitai", models_dir=models,
                        tokens=TokenStore(civitai=CIVITAI_CANARY, use_colab=False))
    assert path.name == "Members_v1.safetensors" and file_sha256(path) == sha256(model_bytes["lora"])


def test_bad_input_is_one_line(models):
    for url, cls in [("ftp://example.com/x", InputError), ("  ", InputError), ("https://civitai.com/images/5", InputError)]:
        with pytest.raises(cls) as info:
            colab_sd.download(url, models_dir=models)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="is not a sha256"):
        colab_sd.download("org/private/private.safetensors", models_dir=models, sha256="abc123")
    with pytest.raises(InputError, match="unknown model type"):
        colab_sd.download("https://example.com/x.safetensors", kind="sampler", models_dir=models)


def test_error_events_carry_the_message(services, models):
    events = Collect()
    with pytest.raises(AuthError):
        colab_sd.download("https://civitai.com/models/6000", models_dir=models, on_event=events,
                          tokens=TokenStore(use_colab=False))
    with pytest.raises(NotFoundError):
        colab_sd.download("civitai:5", models_dir=models, on_event=events, tokens=TokenStore(use_colab=False))
    assert [e.message.split(":")[0] for e in events.of(Error)] == ["this model needs a CivitAI API token",
                                                                   "CivitAI has no model version 5 (it does not exist or was removed); check the link"]
