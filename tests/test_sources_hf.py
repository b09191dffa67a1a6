"""Hugging Face end to end: the real huggingface_hub client against the local fake Hub."""
import json
from pathlib import Path

import pytest

import colab_sd
from colab_sd import cli
from colab_sd.errors import AuthError, InputError, IntegrityError, NotFoundError
from colab_sd.events import Collect, Completed, Progress
from colab_sd.library import read_sidecar
from colab_sd.tokens import TokenStore
from colab_sd.transfer import TransferOptions
from fakes.fixtures import file_sha256, sha256
from fakes.hf_hub import TOKEN

PIPELINE = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0"}',
    "README.md": b"# tiny",
    "v1-5-pruned.safetensors": b"root single-file checkpoint: not part of the pipeline",
    "unet/config.json": b'{"_class_name": "UNet2DConditionModel"}',
    "unet/diffusion_pytorch_model.safetensors": b"unet weights" * 100,
    "unet/diffusion_pytorch_model.fp16.safetensors": b"unet fp16" * 100,
    "unet/diffusion_pytorch_model.bin": b"unet pickle",
    "text_encoder/config.json": b'{"architectures": ["CLIPTextModel"]}',
    "text_encoder/model.safetensors": b"text encoder" * 50,
    "tokenizer/vocab.json": b'{"a": 0}',
    "tokenizer/merges.txt": b"#version: 0.2\n",
    "scheduler/scheduler_config.json": b'{"_class_name": "PNDMScheduler"}',
    "vae/config.json": b'{"_class_name": "AutoencoderKL"}',
    "vae/diffusion_pytorch_model.safetensors": b"vae weights" * 80,
}
# The fp16 variant is fetched and saved under the plain name (diffusers then loads it without variant=).
FETCHED = sorted(["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                  "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
                  "tokenizer/merges.txt", "scheduler/scheduler_config.json", "vae/config.json",
                  "vae/diffusion_pytorch_model.safetensors"])


@pytest.fixture
def repos(hub, model_bytes):
    b = model_bytes
    hub.add_repo("alice/dreamy-lora", {"README.md": b"# LoRA", "dreamy_lora.safetensors": b["lora"],
                                       "sub/dir/pytorch_lora_weights.safetensors": b["lora_xl"]})
    hub.add_repo("alice/dreamy-lora", {"dreamy_lora.safetensors": b["lora_xl"]}, revision="v2.0")
    hub.add_repo("alice/one-vae", {"README.md": b"# VAE", "diffusion_pytorch_model.safetensors": b["vae"]})
    hub.add_repo("alice/embeds", {"sd1/emb.safetensors": b["embedding"]}, repo_type="dataset")
    hub.add_repo("org/tiny-sd", PIPELINE)
    hub.add_repo("org/gated", {"gated.safetensors": b["lora"]}, gated=True)
    hub.add_repo("org/private", {"private.safetensors": b["lora"]}, private=True)
    hub.add_repo("org/many", {"a.safetensors": b["lora"], "b.safetensors": b["lora_xl"]})
    return b


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _no_tokens():
    return TokenStore(use_colab=False)


FORMS = [
    ("https://huggingface.co/alice/dreamy-lora/blob/main/dreamy_lora.safetensors", "lora", "dreamy_lora.safetensors",
     "lora", "main"),
    ("https://huggingface.co/alice/dreamy-lora/resolve/main/dreamy_lora.safetensors?download=true", "lora",
     "dreamy_lora.safetensors", "lora", "main"),
    ("https://huggingface.co/alice/dreamy-lora/resolve/v2.0/dreamy_lora.safetensors", "lora_xl",
     "dreamy_lora.safetensors", "lora", "v2.0"),
    ("https://huggingface.co/alice/dreamy-lora/blob/main/sub/dir/pytorch_lora_weights.safetensors", "lora_xl",
     "dreamy-lora.safetensors", "lora", "main"),
    ("https://hf.co/alice/dreamy-lora/resolve/main/dreamy_lora.safetensors", "lora", "dreamy_lora.safetensors",
     "lora", "main"),
    ("alice/dreamy-lora/dreamy_lora.safetensors", "lora", "dreamy_lora.safetensors", "lora", "main"),
    ("alice/dreamy-lora@v2.0/dreamy_lora.safetensors", "lora_xl", "dreamy_lora.safetensors", "lora", "v2.0"),
    ("huggingface.co/alice/dreamy-lora/blob/main/dreamy_lora.safetensors", "lora", "dreamy_lora.safetensors",
     "lora", "main"),
    ("https://huggingface.co/alice/one-vae", "vae", "one-vae.safetensors", "vae", "main"),
    ("https://huggingface.co/datasets/alice/embeds/resolve/main/sd1/emb.safetensors", "embedding",
     "emb.safetensors", "embedding", "main"),
]


@pytest.mark.parametrize("url, key, name, folder, revision", FORMS, ids=[f[0] for f in FORMS])
def test_every_file_form_via_api(url, key, name, folder, revision, repos, hub, models):
    events = Collect()
    path = colab_sd.download(url, models_dir=models, on_event=events, tokens=_no_tokens())
    assert path == models / folder / name
    assert file_sha256(path) == sha256(repos[key])
    side = read_sidecar(path)
    assert side["kind"] == folder and side["sha256"] == sha256(repos[key]) and side["sha256_verified"] is True
    assert side["source_name"] == "huggingface" and side["huggingface"]["revision"] == revision
    assert side["huggingface"]["commit"] and side["size"] == len(repos[key])
    assert side["source"] == ("https://" + url if url.startswith("huggingface.co/") else url)
    assert _files(models) == sorted([f"{folder}/{name}", f"{folder}/{name}.json"])  # no staging left behind
    # The client's progress bar was bridged into our events, under this download's job.
    progress = events.of(Progress)
    assert progress and progress[-1].downloaded == len(repos[key]) and progress[-1].job == events.events[0].job
    assert len(events.of(Completed)) == 1
    assert hub.cdn.auth_seen == 0


def test_endpoint_host_url_and_commit_revision(repos, hub, models):
    commit = hub.repos[("model", "alice/dreamy-lora")].branches["v2.0"]
    url = f"{hub.base}/alice/dreamy-lora/resolve/{commit}/dreamy_lora.safetensors"
    path = colab_sd.download(url, models_dir=models, tokens=_no_tokens())
    assert file_sha256(path) == sha256(repos["lora_xl"])
    assert read_sidecar(path)["huggingface"]["commit"] == commit


def test_diffusers_repo_is_fetched_whole_but_lean(repos, hub, models):
    events = Collect()
    path = colab_sd.download("https://huggingface.co/org/tiny-sd", models_dir=models, on_event=events,
                             tokens=_no_tokens())
    assert path == models / "checkpoint" / "tiny-sd"
    assert _files(path) == FETCHED
    for rel in FETCHED:
        hub_path = rel.replace("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors")
        assert (path / rel).read_bytes() == PIPELINE[hub_path]
    side = read_sidecar(path)
    assert side["kind"] == "checkpoint" and side["files"] == len(FETCHED) and side["sha256_verified_files"] == 3
    assert side["huggingface"]["repo"] == "org/tiny-sd" and "path" not in side["huggingface"]
    assert _files(models) == sorted([f"checkpoint/tiny-sd/{f}" for f in FETCHED] + ["checkpoint/tiny-sd.json"])
    done = events.of(Completed)
    assert len(done) == 1 and done[0].path == str(path)
    from colab_sd.library import list_models

    assert [(e.kind, e.name) for e in list_models(models)] == [("checkpoint", "tiny-sd")]


def test_forms_via_cli(repos, hub, models, capsys):
    for url, expected in [("alice/dreamy-lora/dreamy_lora.safetensors", models / "lora" / "dreamy_lora.safetensors"),
                          ("org/tiny-sd", models / "checkpoint" / "tiny-sd")]:
        code = cli.main(["download", url, "--dir", str(models), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        done = [json.loads(line) for line in out.splitlines() if json.loads(line)["status"] == "completed"]
        assert len(done) == 1 and Path(done[0]["path"]) == expected and expected.exists()


def test_gated_repo_says_accept_the_licence(repos, hub, models):
    url = "https://huggingface.co/org/gated/blob/main/gated.safetensors"
    with pytest.raises(AuthError) as info:
        colab_sd.download(url, models_dir=models, tokens=_no_tokens())
    assert f"accept its licence at {hub.base}/org/gated" in str(info.value) and "HF_TOKEN" in str(info.value)
    hub.granted.clear()
    with pytest.raises(AuthError, match="accept its licence .* with the account of your token"):
        colab_sd.download(url, models_dir=models, tokens=TokenStore(huggingface=TOKEN, use_colab=False))
    hub.granted.add(TOKEN)
    path = colab_sd.download(url, models_dir=models, tokens=TokenStore(huggingface=TOKEN, use_colab=False))
    assert file_sha256(path) == sha256(repos["lora"])


def test_private_and_missing_repos(repos, hub, models):
    with pytest.raises(NotFoundError, match="no Hugging Face repo org/private: it does not exist or is private"):
        colab_sd.download("org/private/private.safetensors", models_dir=models, tokens=_no_tokens())
    path = colab_sd.download("org/private/private.safetensors", models_dir=models,
                             tokens=TokenStore(huggingface=TOKEN, use_colab=False))
    assert file_sha256(path) == sha256(repos["lora"])
    with pytest.raises(NotFoundError, match="no Hugging Face repo org/nothing"):
        colab_sd.download("https://huggingface.co/org/nothing", models_dir=models, tokens=_no_tokens())


def test_plain_lfs_file_goes_through_the_segmented_engine(repos, hub, models):
    """A non-Xet file is one connection in the Hub client; colab_sd's engine fetches it by ranges instead,
    sending the token to the Hub only, never to the CDN that the Hub redirects to."""
    path = colab_sd.download("org/private/private.safetensors", models_dir=models,
                             tokens=TokenStore(huggingface=TOKEN, use_colab=False))
    assert file_sha256(path) == sha256(repos["lora"])
    assert hub.cdn.auth_seen == 0
    assert any(r["headers"].get("Range") for r in hub.cdn.requests)  # the engine asks for ranges
    resolve = [r for r in hub.requests if "/resolve/" in r["path"] and r.get("method", "GET") == "GET"]
    assert resolve and all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in resolve)


def test_missing_file_and_revision(repos, hub, models):
    with pytest.raises(NotFoundError, match="alice/dreamy-lora has no file 'nope.safetensors' at revision 'main'"):
        colab_sd.download("https://huggingface.co/alice/dreamy-lora/blob/main/nope.safetensors", models_dir=models,
                          tokens=_no_tokens())
    with pytest.raises(NotFoundError, match="has no revision 'v9'"):
        colab_sd.download("https://huggingface.co/alice/dreamy-lora/blob/v9/dreamy_lora.safetensors",
                          models_dir=models, tokens=_no_tokens())
    assert _files(models) == []


def test_bad_token_is_named(repos, hub, models):
    with pytest.raises(AuthError, match=r"Hugging Face rejected the token \(argument\)"):
        colab_sd.download("alice/dreamy-lora/dreamy_lora.safetensors", models_dir=models,
                          tokens=TokenStore(huggingface="hf_fakeWrongToken9876543210", use_colab=False))


def test_repo_with_several_files_asks_which(repos, hub, models):
    with pytest.raises(InputError, match="holds 2 model files .* paste the one you want, e.g. org/many/a.safetensors"):
        colab_sd.download("org/many", models_dir=models, tokens=_no_tokens())


def test_sha256_mismatch_deletes_the_file(repos, hub, models):
    hub.repos[("model", "alice/dreamy-lora")].corrupt.add("dreamy_lora.safetensors")
    with pytest.raises(IntegrityError, match="sha256"):
        colab_sd.download("alice/dreamy-lora/dreamy_lora.safetensors", models_dir=models, tokens=_no_tokens())
    assert _files(models) == []


def test_type_option_wins_and_repeat_is_skipped(repos, hub, models):
    url = "alice/dreamy-lora/dreamy_lora.safetensors"
    path = colab_sd.download(url, kind="embedding", models_dir=models, tokens=_no_tokens())
    assert path == models / "embedding" / "dreamy_lora.safetensors"
    before = len(hub.cdn.requests)
    events = Collect()
    assert colab_sd.download(url, kind="embedding", models_dir=models, on_event=events, tokens=_no_tokens()) == path
    assert events.of(Completed)[0].skipped and len(hub.cdn.requests) == before


def test_cancel_stops_the_download_and_keeps_nothing_final(repos, hub, models):
    import threading

    from colab_sd.errors import DownloadCancelled
    from colab_sd.events import Cancelled

    cancel = threading.Event()
    cancel.set()
    events = Collect()
    with pytest.raises(DownloadCancelled):
        colab_sd.download("alice/dreamy-lora/dreamy_lora.safetensors", models_dir=models, on_event=events,
                          cancel=cancel, tokens=_no_tokens())
    assert len(events.of(Cancelled)) == 1
    assert not [f for f in _files(models) if f.endswith(".safetensors")]  # at most a resumable .part


def test_interrupted_hub_download_resumes_from_its_part(repos, hub, models):
    """Hub files go through the byte mover like any link: an interrupted one resumes from its `.part`
    with Range on the next run, then the Hub's sha256 is checked."""
    import threading

    from colab_sd.errors import DownloadCancelled

    data = repos["checkpoint_xl"]
    hub.add_repo("alice/big", {"big_model.safetensors": data})
    cancel = threading.Event()

    def stop_after_first_bytes(event):
        if isinstance(event, Progress) and 0 < event.downloaded < len(data):
            cancel.set()

    options = TransferOptions(connections=1, chunk_size=64 * 1024)
    with pytest.raises(DownloadCancelled):
        colab_sd.download("alice/big/big_model.safetensors", models_dir=models, on_event=stop_after_first_bytes,
                          cancel=cancel, tokens=_no_tokens(), options=options)
    parts = list(models.rglob("big_model.safetensors.part"))
    assert cancel.is_set() and parts and not (models / "checkpoint" / "big_model.safetensors").exists()
    first_requests = len(hub.cdn.requests)
    path = colab_sd.download("alice/big/big_model.safetensors", models_dir=models, tokens=_no_tokens())
    assert path == models / "checkpoint" / "big_model.safetensors" and file_sha256(path) == sha256(data)
    assert read_sidecar(path)["sha256_verified"] is True
    assert any(r["headers"].get("Range", "bytes=0-") != "bytes=0-" for r in hub.cdn.requests[first_requests:])
    assert _files(models) == ["checkpoint/big_model.safetensors", "checkpoint/big_model.safetensors.json"]


@pytest.mark.parametrize("bad", ["/etc/evil.json", "../../evil.json", "unet/../../evil.json", "a\\..\\b.json"])
def test_a14_a_listing_with_an_unsafe_path_is_refused_whatever_the_client(hub, models, bad):
    """Issue 13 A14: huggingface_hub 0.26 wrote such listed paths outside the repo folder; we check every
    listed path ourselves, and the byte mover, not the client, decides where bytes go."""
    from colab_sd.errors import DownloadError

    hub.add_repo("evil/repo", {"model_index.json": b"{}", "unet/config.json": b"{}", bad: b"pwned"})
    with pytest.raises(DownloadError, match="unsafe path"):
        colab_sd.download("evil/repo", models_dir=models, tokens=_no_tokens())
    assert _files(models) == [] and not (models.parent / "evil.json").exists()


def test_fetched_diffusers_repo_loads_with_diffusers(hub, models, tmp_path):
    """A real (tiny) pipeline saved in full precision and as a sharded fp16 variant: what we fetch
    (the fp16 set, saved under plain names) loads with a plain from_pretrained() and generates."""
    import torch
    from diffusers import StableDiffusionPipeline

    from tiny_models import build_sd1

    pipe = build_sd1(seed=3)
    repo = tmp_path / "repo"
    pipe.save_pretrained(repo)
    pipe.to(torch.float16).save_pretrained(repo, variant="fp16", max_shard_size="200KB")
    files = {p.relative_to(repo).as_posix(): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert any(".fp16-00001-of-" in name for name in files)  # the variant really is sharded
    hub.add_repo("org/tiny-pipe", files)
    path = colab_sd.download("https://huggingface.co/org/tiny-pipe", models_dir=models, tokens=_no_tokens())
    assert path == models / "checkpoint" / "tiny-pipe"
    fetched = _files(path)
    assert not any(name.endswith(".bin") for name in fetched)
    assert sum(len(files[n]) for n in files if ".fp16" in n) > 0
    loaded = StableDiffusionPipeline.from_pretrained(path, dtype=torch.float32, safety_checker=None,
                                                     requires_safety_checker=False)
    want = pipe.unet.state_dict()
    got = loaded.unet.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k].half(), want[k]) for k in want)
    loaded.set_progress_bar_config(disable=True)
    image = loaded("a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3)


def test_a_repo_download_is_one_progress_stream(repos, hub, models):
    events = Collect()
    colab_sd.download("org/tiny-sd", models_dir=models, on_event=events, tokens=_no_tokens())
    progress = events.of(Progress)
    total = sum(len(PIPELINE[f.replace("unet/diffusion_pytorch_model.safetensors",
                                       "unet/diffusion_pytorch_model.fp16.safetensors")]) for f in FETCHED)
    assert progress and all(p.total == total for p in progress)
    assert [p.downloaded for p in progress] == sorted(p.downloaded for p in progress)  # never goes back
    assert progress[-1].downloaded == total
