"""Google Drive end to end: the real gdown, at its hard-coded Drive URLs, reaching the local fake
through HTTPS_PROXY + REQUESTS_CA_BUNDLE (see tests/fakes/gdrive.py)."""
import json
from pathlib import Path

import pytest

import colab_sd
from colab_sd import cli
from colab_sd.errors import AuthError, DownloadError
from colab_sd.events import Collect, Completed, Info, Progress
from colab_sd.library import list_models, read_sidecar
from fakes.fixtures import file_sha256, sha256
from fakes.gdrive import DriveFile, new_id


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


FORMS = [
    "https://drive.google.com/file/d/{id}/view?usp=sharing",
    "https://drive.google.com/file/d/{id}/view",
    "https://drive.google.com/open?id={id}",
    "https://drive.google.com/uc?id={id}&export=download",
    "https://drive.usercontent.google.com/download?id={id}&export=download",
    "https://docs.google.com/uc?export=download&id={id}",
    "drive.google.com/file/d/{id}/view",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_file_form_via_api(form, drive, model_bytes, models):
    f = drive.add_file("dreamy_lora.safetensors", model_bytes["lora"])
    url = form.format(id=f.id)
    events = Collect()
    path = colab_sd.download(url, models_dir=models, on_event=events)
    assert path == models / "lora" / "dreamy_lora.safetensors"  # placed by its header: a LoRA
    assert file_sha256(path) == sha256(model_bytes["lora"])
    side = read_sidecar(path)
    assert side["kind"] == "lora" and side["family"] == "sd1" and side["source_name"] == "gdrive"
    assert side["gdrive"]["id"] == f.id and side["sha256"] == sha256(model_bytes["lora"])
    assert side["size"] == len(model_bytes["lora"]) and side["sha256_verified"] is False  # Drive gives no hash
    assert side["source"] == (url if "://" in url else "https://" + url)
    assert _files(models) == ["lora/dreamy_lora.safetensors", "lora/dreamy_lora.safetensors.json"]
    assert events.of(Progress)[-1].downloaded == len(model_bytes["lora"])
    assert [e.path for e in events.of(Completed)] == [str(path)]
    assert any(r["host"] == "drive.usercontent.google.com" for r in drive.requests)  # the real flow


def test_large_file_goes_through_the_confirmation_page(drive, model_bytes, models):
    f = drive.add_file("big_vae.safetensors", model_bytes["vae"], large=True)
    path = colab_sd.download(f"https://drive.google.com/file/d/{f.id}/view", models_dir=models)
    assert path == models / "vae" / "big_vae.safetensors"
    assert file_sha256(path) == sha256(model_bytes["vae"])
    asked = [r["query"] for r in drive.requests if r["host"] == "drive.usercontent.google.com"]
    assert "confirm" not in asked[0] and asked[-1].get("confirm") == "t" and asked[-1].get("uuid")


def test_file_forms_via_cli(drive, model_bytes, models, capsys):
    f = drive.add_file("emb.safetensors", model_bytes["embedding"])
    for url in (f"https://drive.google.com/open?id={f.id}",
                f"https://drive.usercontent.google.com/download?id={f.id}&export=download"):
        code = cli.main(["download", url, "--dir", str(models), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        done = [json.loads(x) for x in out.splitlines() if json.loads(x)["status"] == "completed"]
        assert len(done) == 1 and Path(done[0]["path"]) == models / "embedding" / "emb.safetensors"
    assert file_sha256(models / "embedding" / "emb.safetensors") == sha256(model_bytes["embedding"])


def test_unknown_file_goes_to_other_with_a_reason(drive, model_bytes, models):
    f = drive.add_file("mystery.bin", model_bytes["noise"])
    events = Collect()
    path = colab_sd.download(f"https://drive.google.com/file/d/{f.id}/view", models_dir=models, on_event=events)
    assert path == models / "other" / "mystery.bin" and file_sha256(path) == sha256(model_bytes["noise"])
    assert any("could not tell what this file is" in e.message for e in events.of(Info))


def test_type_option_wins(drive, model_bytes, models):
    f = drive.add_file("dreamy_lora.safetensors", model_bytes["lora"])
    path = colab_sd.download(f"https://drive.google.com/file/d/{f.id}/view", kind="checkpoint", models_dir=models)
    assert path == models / "checkpoint" / "dreamy_lora.safetensors"


def test_folder_keeps_its_structure(drive, model_bytes, models):
    inner = drive.add_folder("extra", [DriveFile(new_id(), "b_lora.safetensors", model_bytes["lora_xl"])])
    a = DriveFile(new_id(), "a_lora.safetensors", model_bytes["lora"])
    top = drive.add_folder("My LoRAs", [a, inner])
    drive.files[inner.children[0].id] = inner.children[0]
    events = Collect()
    path = colab_sd.download(f"https://drive.google.com/drive/folders/{top.id}?usp=sharing", models_dir=models,
                             on_event=events)
    assert path == models / "lora" / "My LoRAs"  # every model file in it is a LoRA
    assert _files(path) == ["a_lora.safetensors", "extra/b_lora.safetensors"]
    assert file_sha256(path / "a_lora.safetensors") == sha256(model_bytes["lora"])
    assert file_sha256(path / "extra" / "b_lora.safetensors") == sha256(model_bytes["lora_xl"])
    side = read_sidecar(path)
    assert side["kind"] == "lora" and side["files"] == 2 and side["gdrive"]["folder"] is True
    assert [e.path for e in events.of(Completed)] == [str(path)]
    names = [e.name for e in list_models(models)]
    assert names == ["My LoRAs/a_lora.safetensors", "My LoRAs/extra/b_lora.safetensors"]


def test_mixed_folder_goes_to_other(drive, model_bytes, models):
    top = drive.add_folder("Bundle", [DriveFile(new_id(), "l.safetensors", model_bytes["lora"]),
                                      DriveFile(new_id(), "v.safetensors", model_bytes["vae"])])
    path = colab_sd.download(f"https://drive.google.com/drive/u/0/folders/{top.id}", models_dir=models)
    assert path == models / "other" / "Bundle" and _files(path) == ["l.safetensors", "v.safetensors"]


def test_quota_page_is_a_clear_error_and_saves_nothing(drive, model_bytes, models, capsys):
    f = drive.add_file("popular.safetensors", model_bytes["lora"], quota=True)
    with pytest.raises(DownloadError, match="download quota for this file is used up"):
        colab_sd.download(f"https://drive.google.com/file/d/{f.id}/view", models_dir=models)
    assert _files(models) == []
    assert cli.main(["download", f"https://drive.google.com/uc?id={f.id}", "--dir", str(models)]) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("colab-sd: error:")]
    assert len(errors) == 1 and "too many users have viewed or downloaded it" in errors[0]


@pytest.mark.parametrize("case", ["private", "missing", "private-folder"])
def test_permission_and_missing_are_clear_errors(case, drive, model_bytes, models):
    if case == "private":
        url = f"https://drive.google.com/file/d/{drive.add_file('p.safetensors', model_bytes['lora'], private=True).id}/view"
    elif case == "missing":
        url = f"https://drive.google.com/file/d/{new_id()}/view"
    else:
        url = f"https://drive.google.com/drive/folders/{drive.add_folder('Secret', [], private=True).id}"
    with pytest.raises(AuthError, match="'Anyone with the link'"):
        colab_sd.download(url, models_dir=models)
    assert _files(models) == []  # never a sign-in or 404 page saved as a model


def test_repeat_download_is_skipped(drive, model_bytes, models):
    f = drive.add_file("dreamy_lora.safetensors", model_bytes["lora"])
    url = f"https://drive.google.com/file/d/{f.id}/view"
    first = colab_sd.download(url, models_dir=models)
    served = len(drive.requests)
    events = Collect()
    assert colab_sd.download(url, models_dir=models, on_event=events) == first
    assert events.of(Completed)[0].skipped and len(drive.requests) == served


def test_gdown_without_progress_callback_still_reports(drive, model_bytes, models, monkeypatch):
    """Colab ships gdown 5.2.x: no progress=, cancel=, retries= or timeout=. Only what the installed
    signature has is passed, and a watcher reports the growing file instead."""
    import gdown

    real = gdown.download
    seen = {}

    def download_v5(url=None, output=None, quiet=False, proxy=None, speed=None, use_cookies=True, verify=True,
                    id=None, fuzzy=False, resume=False, format=None, user_agent=None, log_messages=None):
        seen.update(url=url, output=output, resume=resume, quiet=quiet)
        return real(url=url, output=output, quiet=quiet, proxy=proxy, speed=speed, use_cookies=use_cookies,
                    verify=verify, id=id, resume=resume, format=format, user_agent=user_agent,
                    log_messages=log_messages)

    monkeypatch.setattr(gdown, "download", download_v5)
    f = drive.add_file("dreamy_lora.safetensors", model_bytes["lora"])
    events = Collect()
    path = colab_sd.download(f"https://drive.google.com/file/d/{f.id}/view", models_dir=models, on_event=events)
    assert file_sha256(path) == sha256(model_bytes["lora"]) and path.parent.name == "lora"
    assert seen["url"] == f"https://drive.google.com/uc?id={f.id}" and seen["resume"] and seen["quiet"]
    last = events.of(Progress)[-1]
    assert last.downloaded == last.total == len(model_bytes["lora"])


def test_user_sha256_is_checked(drive, model_bytes, models):
    from colab_sd.errors import IntegrityError

    f = drive.add_file("dreamy_lora.safetensors", model_bytes["lora"])
    url = f"https://drive.google.com/file/d/{f.id}/view"
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        colab_sd.download(url, models_dir=models, sha256="ab" * 32)
    assert _files(models) == []
    path = colab_sd.download(url, models_dir=models, sha256=sha256(model_bytes["lora"]).upper())
    assert read_sidecar(path)["sha256_verified"] is True


def test_repeat_folder_download_is_skipped(drive, model_bytes, models):
    top = drive.add_folder("Pack", [DriveFile(new_id(), "l.safetensors", model_bytes["lora"])])
    url = f"https://drive.google.com/drive/folders/{top.id}"
    first = colab_sd.download(url, models_dir=models)
    served = len(drive.requests)
    events = Collect()
    assert colab_sd.download(url, models_dir=models, on_event=events) == first == models / "lora" / "Pack"
    assert events.of(Completed)[0].skipped and len(drive.requests) == served


def test_a_page_served_as_the_file_is_never_kept(drive, models):
    from colab_sd.errors import ErrorPageError

    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in to continue</body></html>"
    f = drive.add_file("model.safetensors", page)  # what a broken share gives: a page under the model's name
    with pytest.raises(ErrorPageError, match="web page instead of the file"):
        colab_sd.download(f"https://drive.google.com/file/d/{f.id}/view", models_dir=models)
    assert _files(models) == []
