"""CivitAI end to end against the local fake: every URL form, mirrors, tokens, errors, sidecars."""
import json
from pathlib import Path

import pytest

import colab_sd
from colab_sd import cli
from colab_sd.errors import AuthError, IntegrityError, NotFoundError
from colab_sd.events import Collect, Completed, Info
from colab_sd.library import read_sidecar
from colab_sd.tokens import TokenStore
from fakes.civitai import TOKEN, FakeFile
from fakes.fixtures import file_sha256, sha256

NEEDS_TOKEN = ("this model needs a CivitAI API token: set CIVITAI_TOKEN or enter it in the Tokens panel "
               "(civitai.com → Account settings → API keys)")


@pytest.fixture
def catalog(civitai, model_bytes):
    """A few models shaped like real CivitAI entries; returns {name: bytes} of what they serve."""
    lora, lora_xl = model_bytes["lora"], model_bytes["lora_xl"]
    civitai.add_version(model_id=5000, version_id=4999, model_name="Dreamy LoRA", model_type="LORA",
                        version_name="v0", base_model="SD 1.5", trained_words=["dreamy"],
                        files=[FakeFile(4901, "dreamy_v0.safetensors", lora_xl, primary=True,
                                        served_name="Dreamy_LoRA_v0.safetensors")])
    civitai.add_version(model_id=5000, version_id=5001, model_name="Dreamy LoRA", model_type="LORA",
                        version_name="v1", base_model="SD 1.5", trained_words=["dreamy light", "soft glow"],
                        files=[FakeFile(5101, "dreamy.safetensors", lora, primary=True,
                                        served_name="Dreamy_LoRA_v1.safetensors"),
                               FakeFile(5102, "dreamy.pt", model_bytes["noise"], format="PickleTensor",
                                        size="full", fp="fp32"),
                               FakeFile(5103, "dreamy_fp32.safetensors", lora_xl, size="full", fp="fp32",
                                        served_name="Dreamy_LoRA_v1_fp32.safetensors")])
    return {"v1": lora, "v0": lora_xl, "fp32": lora_xl}


def _tokens():
    return TokenStore(civitai=TOKEN, use_colab=False)


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _check(root, path, folder, name, data, *, version_id, file_id, source):
    path = Path(path)
    assert path == root / folder / name
    assert file_sha256(path) == sha256(data)
    side = read_sidecar(path)
    assert side["kind"] == folder and side["sha256"] == sha256(data) and side["size"] == len(data)
    assert side["sha256_verified"] is True
    assert side["source"] == source and side["source_name"] == "civitai"
    assert side["civitai"]["version_id"] == version_id and side["civitai"]["file_id"] == file_id
    assert side["civitai"]["model_id"] == 5000 and side["civitai"]["model_name"] == "Dreamy LoRA"
    assert side["base_model"] == "SD 1.5" and side["downloaded_at"].endswith("Z")
    assert side["family"] == "sd1" or version_id == 4999 or file_id == 5103
    # The model, its sidecar and its preview (the version's first PG image, from the CDN at 450 px).
    assert _files(root) == sorted([f"{folder}/{name}", f"{folder}/{name}.json", f"{folder}/{name}.preview.jpeg"])
    assert (root / folder / f"{name}.preview.jpeg").read_bytes()[:3] == b"\xff\xd8\xff"


FORMS = [
    ("https://civitai.com/models/5000", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.com/models/5000/dreamy-lora", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.com/models/5000?modelVersionId=4999", "v0", 4999, 4901, "Dreamy_LoRA_v0.safetensors"),
    ("https://civitai.com/models/5000/dreamy-lora?modelVersionId=5001", "v1", 5001, 5101,
     "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.com/api/download/models/5001", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.com/api/download/models/5001?type=Model&format=SafeTensor&size=pruned&fp=fp16", "v1", 5001,
     5101, "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.com/api/download/models/5001?type=Model&format=SafeTensor&size=full&fp=fp32", "fp32", 5001,
     5103, "Dreamy_LoRA_v1_fp32.safetensors"),
    ("https://civitai.com/api/download/models/5001?fileId=5103", "fp32", 5001, 5103,
     "Dreamy_LoRA_v1_fp32.safetensors"),
    ("urn:air:sd1:lora:civitai:5000@5001", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("urn:air:sd1:lora:civitai:5000", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("civitai:5001", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.red/models/5000/dreamy-lora", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),
    ("https://civitai.green/api/download/models/4999", "v0", 4999, 4901, "Dreamy_LoRA_v0.safetensors"),
    ("civitai.com/models/5000", "v1", 5001, 5101, "Dreamy_LoRA_v1.safetensors"),  # pasted without https://
]


@pytest.mark.parametrize("url, which, version_id, file_id, name", FORMS, ids=[f[0] for f in FORMS])
def test_every_url_form_via_api(url, which, version_id, file_id, name, catalog, civitai, models):
    events = Collect()
    path = colab_sd.download(url, models_dir=models, on_event=events, tokens=_tokens())
    source = url if "://" in url or url.startswith(("urn:", "civitai:")) else "https://" + url
    _check(models, path, "lora", name, catalog[which], version_id=version_id, file_id=file_id, source=source)
    done = events.of(Completed)
    assert len(done) == 1 and done[0].path == str(path) and done[0].sha256 == sha256(catalog[which])
    # The token went to CivitAI (API and download), never to the storage host.
    downloads = civitai.hits("/api/download/")
    assert downloads and all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in downloads)
    assert civitai.storage.auth_seen == 0 and civitai.storage.hits("/file/")
    # One metadata call per URL.
    assert len(civitai.hits("/api/v1/")) == 1


def test_url_on_the_endpoint_host_itself(catalog, civitai, models):
    url = f"{civitai.base}/models/5000/dreamy-lora?modelVersionId=5001"
    path = colab_sd.download(url, models_dir=models, tokens=_tokens())
    _check(models, path, "lora", "Dreamy_LoRA_v1.safetensors", catalog["v1"], version_id=5001, file_id=5101,
           source=url)


@pytest.mark.parametrize("url", ["https://civitai.com/api/download/models/5001?fileId=5103",
                                 "urn:air:sd1:lora:civitai:5000@4999", "https://civitai.red/models/5000"])
def test_url_forms_via_cli(url, catalog, civitai, models, monkeypatch, capsys):
    monkeypatch.setenv("CIVITAI_TOKEN", TOKEN)
    code = cli.main(["download", url, "--dir", str(models), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    done = [e for e in events if e["status"] == "completed"]
    assert len(done) == 1
    path = Path(done[0]["path"])
    assert path.parent == models / "lora" and file_sha256(path) == done[0]["sha256"]
    assert read_sidecar(path)["source"] == url and read_sidecar(path)["trigger_words"]
    assert TOKEN not in out + err and civitai.storage.auth_seen == 0


def test_public_model_needs_no_token(catalog, civitai, models):
    path = colab_sd.download("https://civitai.com/models/5000", models_dir=models,
                             tokens=TokenStore(use_colab=False))
    assert file_sha256(path) == sha256(catalog["v1"])
    assert all("Authorization" not in r["headers"] for r in civitai.requests)


@pytest.mark.parametrize("style", ["redirect", "json"])
def test_login_redirect_and_401_say_token_needed(style, civitai, model_bytes, models):
    civitai.add_version(model_id=6000, version_id=6001, model_name="Members", model_type="LORA", auth=style,
                        files=[FakeFile(6101, "members.safetensors", model_bytes["lora"])])
    events = Collect()
    with pytest.raises(AuthError) as info:
        colab_sd.download("https://civitai.com/models/6000", models_dir=models, on_event=events,
                          tokens=TokenStore(use_colab=False))
    assert str(info.value) == NEEDS_TOKEN
    assert [e.message for e in events.of(colab_sd.events.Error)] == [NEEDS_TOKEN]
    assert _files(models) == []  # no login page saved as "the model"
    if style == "redirect":
        assert any(r["path"] == "/api/download/models/6001" for r in civitai.requests)
    # With the token it works, and the token never reached storage.
    path = colab_sd.download("https://civitai.com/models/6000", models_dir=models, tokens=_tokens())
    assert file_sha256(path) == sha256(model_bytes["lora"]) and civitai.storage.auth_seen == 0


def test_wrong_token_is_named(civitai, model_bytes, models):
    civitai.add_version(model_id=6000, version_id=6001, model_name="Members", model_type="LORA", auth="json",
                        files=[FakeFile(6101, "members.safetensors", model_bytes["lora"])])
    with pytest.raises(AuthError, match=r"CivitAI rejected the API token \(argument\)"):
        colab_sd.download("civitai:6001", models_dir=models,
                          tokens=TokenStore(civitai="fake-wrong-token-9876543210", use_colab=False))
    assert _files(models) == []


def test_early_access_says_until_when(civitai, model_bytes, models):
    civitai.add_version(model_id=7000, version_id=7001, model_name="Fresh", model_type="Checkpoint",
                        early_access_until="2026-12-24T18:30:00.000Z",
                        files=[FakeFile(7101, "fresh.safetensors", model_bytes["lora"])])
    with pytest.raises(AuthError) as info:
        colab_sd.download("https://civitai.com/models/7000", models_dir=models, tokens=_tokens())
    assert "Early Access until 2026-12-24 18:30 UTC" in str(info.value)
    assert _files(models) == []


def test_a_download_404_never_calls_the_version_removed(civitai, model_bytes, models):
    civitai.add_version(model_id=8000, version_id=8001, model_name="Gone", model_type="LORA", removed=True,
                        files=[FakeFile(8101, "gone.safetensors", model_bytes["lora"])])
    # The metadata call succeeded, so the version exists: the 404 is about the download link (issue 12).
    with pytest.raises(NotFoundError) as info:
        colab_sd.download("https://civitai.com/api/download/models/8001", models_dir=models, tokens=_tokens())
    assert "found model 'Gone' version 'v1' (8001)" in str(info.value) and "answered 404" in str(info.value)
    assert "removed" not in str(info.value) and "does not exist" not in str(info.value)
    # A version the API itself does not know (on any host) is reported as such.
    with pytest.raises(NotFoundError, match="no model version 424242"):
        colab_sd.download("civitai:424242", models_dir=models, tokens=_tokens())
    with pytest.raises(NotFoundError, match="no model 31337"):
        colab_sd.download("https://civitai.com/models/31337", models_dir=models, tokens=_tokens())
    assert _files(models) == []


def test_model_page_without_downloadable_file(civitai, models, capsys):
    civitai.add_empty_model(9000, "Placeholder")
    with pytest.raises(NotFoundError, match="'Placeholder' has no downloadable file"):
        colab_sd.download("https://civitai.com/models/9000", models_dir=models, tokens=_tokens())
    assert cli.main(["download", "https://civitai.com/models/9000", "--dir", str(models)]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("colab-sd: error:")]
    assert len(errors) == 1 and "has no downloadable file" in errors[0]


def test_unscanned_file_downloads_with_a_warning(civitai, model_bytes, models):
    civitai.add_version(model_id=9100, version_id=9101, model_name="Brand New", model_type="LORA",
                        files=[FakeFile(9201, "new.safetensors", model_bytes["lora"], scan="Pending")])
    events = Collect()
    path = colab_sd.download("civitai:9101", models_dir=models, on_event=events, tokens=_tokens())
    assert file_sha256(path) == sha256(model_bytes["lora"])
    assert any("no hash could be checked" in e.message for e in events.of(Info))
    side = read_sidecar(path)
    assert side["sha256_verified"] is False and side["sha256"] == sha256(model_bytes["lora"])


def test_safetensors_preferred_over_pickle_primary(civitai, model_bytes, models):
    civitai.add_version(model_id=9300, version_id=9301, model_name="Old Style", model_type="Checkpoint",
                        files=[FakeFile(9311, "old.ckpt", model_bytes["noise"], format="PickleTensor", primary=True),
                               FakeFile(9312, "old.safetensors", model_bytes["lora"])])
    path = colab_sd.download("https://civitai.com/models/9300", models_dir=models, tokens=_tokens())
    assert path.name == "old.safetensors" and file_sha256(path) == sha256(model_bytes["lora"])


def test_hash_mismatch_keeps_nothing(civitai, model_bytes, models):
    civitai.add_version(model_id=9400, version_id=9401, model_name="Broken", model_type="LORA",
                        files=[FakeFile(9411, "broken.safetensors", model_bytes["lora"], corrupt=True)])
    with pytest.raises(IntegrityError):
        colab_sd.download("civitai:9401", models_dir=models, tokens=_tokens())
    assert [f for f in _files(models) if not f.endswith((".part", ".part.json"))] == []


@pytest.mark.parametrize("model_type, file_type, key, folder", [
    ("TextualInversion", "Model", "embedding", "embedding"),
    ("VAE", "Model", "vae", "vae"),
    ("Checkpoint", "Model", "checkpoint_xl", "checkpoint"),
])
def test_kind_folders(model_type, file_type, key, folder, civitai, model_bytes, models):
    civitai.add_version(model_id=9500, version_id=9501, model_name="K", model_type=model_type,
                        base_model="SDXL 1.0", files=[FakeFile(9511, f"k_{key}.safetensors", model_bytes[key],
                                                               type=file_type)])
    path = colab_sd.download("civitai:9501", models_dir=models, tokens=_tokens())
    assert path == models / folder / f"k_{key}.safetensors"
    assert read_sidecar(path)["kind"] == folder and file_sha256(path) == sha256(model_bytes[key])


def test_type_option_wins_and_repeat_is_skipped(catalog, civitai, models):
    path = colab_sd.download("civitai:5001", kind="other", models_dir=models, tokens=_tokens())
    assert path == models / "other" / "Dreamy_LoRA_v1.safetensors"
    served = len(civitai.storage.hits("/file/"))
    events = Collect()
    again = colab_sd.download("civitai:5001", kind="other", models_dir=models, on_event=events, tokens=_tokens())
    assert again == path and events.of(Completed)[0].skipped
    assert len(civitai.storage.hits("/file/")) == served  # not fetched again


def test_pasted_token_in_url_is_used_and_redacted(civitai, model_bytes, models):
    pasted = "fake-pasted-civitai-token-55555"
    civitai.token = pasted
    civitai.add_version(model_id=6000, version_id=6001, model_name="Members", model_type="LORA", auth="redirect",
                        files=[FakeFile(6101, "members.safetensors", model_bytes["lora"])])
    events = Collect()
    url = f"https://civitai.com/api/download/models/6001?token={pasted}"
    path = colab_sd.download(url, models_dir=models, on_event=events, tokens=TokenStore(use_colab=False))
    assert file_sha256(path) == sha256(model_bytes["lora"])
    assert all(pasted not in e.to_json() for e in events.events)
    assert pasted not in path.with_name(path.name + ".json").read_text()
    assert all("token=" not in r["path"] + json.dumps(r["query"]) for r in civitai.requests + civitai.storage.requests)


def test_user_name_wins_over_the_served_name(catalog, civitai, models, capsys, monkeypatch):
    monkeypatch.setenv("CIVITAI_TOKEN", TOKEN)
    assert cli.main(["download", "civitai:5001", "--dir", str(models), "--name", "my_dreamy.safetensors"]) == 0
    path = models / "lora" / "my_dreamy.safetensors"
    assert file_sha256(path) == sha256(catalog["v1"]) and read_sidecar(path)["civitai"]["version_id"] == 5001


def test_flaky_api_is_retried_then_reported(catalog, civitai, models, monkeypatch):
    from colab_sd.civitai import client
    from colab_sd.errors import DownloadError

    monkeypatch.setattr(client, "BACKOFF", 0.01)
    civitai.api_failures = [502, 429]
    path = colab_sd.download("civitai:5001", models_dir=models, tokens=_tokens())
    assert file_sha256(path) == sha256(catalog["v1"]) and len(civitai.hits("/api/v1/")) == 3
    civitai.api_failures = [503, 503, 503]
    with pytest.raises(DownloadError) as info:
        colab_sd.download("civitai:4999", models_dir=models, tokens=_tokens())
    # CivitAI's own trouble is named as such, not blamed on the user's connection.
    assert "CivitAI is having trouble on its side (HTTP 503)" in str(info.value)
    assert "not your connection" in str(info.value) and "\n" not in str(info.value)


def test_unreachable_civitai_is_one_line(models, monkeypatch):
    import socket

    from colab_sd.civitai import client
    from colab_sd.errors import DownloadError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CIVITAI_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(client, "BACKOFF", 0.01)
    with pytest.raises(DownloadError) as info:
        colab_sd.download("https://civitai.com/models/5000", models_dir=models, tokens=_tokens())
    assert "could not reach CivitAI" in str(info.value) and "\n" not in str(info.value)


def test_api_redirect_is_followed_only_on_civitai_hosts(catalog, civitai, models):
    from colab_sd.errors import DownloadError
    from servers import FakeServer, send_json

    class Elsewhere(FakeServer):
        def dispatch(self, h):
            send_json(h, 200, {"stolen": h.headers.get("Authorization")})

    with Elsewhere() as other:
        civitai.api_moved_to = other.base  # a redirect off CivitAI: not followed, the token stays home
        with pytest.raises(DownloadError, match="answered HTTP 301"):
            colab_sd.download("civitai:5001", models_dir=models, tokens=_tokens())
        assert other.requests == []
    civitai.api_moved_to = civitai.base + "/moved"  # same host: followed
    with pytest.raises(NotFoundError):  # /moved/api/v1/... does not exist on the fake: proof it went there
        colab_sd.download("civitai:5001", models_dir=models, tokens=_tokens())
    assert any(r["path"].startswith("/moved/api/v1/") for r in civitai.requests)
