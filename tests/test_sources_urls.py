"""Pure decisions of the sources: URL parsing, dispatch, file choice, kinds, error wording. No I/O."""
import pytest

from colab_sd import sources
from colab_sd.errors import AuthError, InputError, NotFoundError
from colab_sd.sources import civitai, gdrive, huggingface
from colab_sd.http import Retryable
from colab_sd.sources.civitai import CivitaiRef
from colab_sd.sources.huggingface import HfRef


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    for name in ("CIVITAI_ENDPOINT", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------- CivitAI


@pytest.mark.parametrize("url, expected", [
    ("https://civitai.com/models/4384", CivitaiRef(model_id=4384, base="https://civitai.com")),
    ("https://civitai.com/models/4384/dreamshaper", CivitaiRef(model_id=4384, base="https://civitai.com")),
    ("https://civitai.com/models/4384?modelVersionId=128713",
     CivitaiRef(model_id=4384, version_id=128713, base="https://civitai.com")),
    ("https://civitai.com/models/4384/dreamshaper?modelVersionId=128713",
     CivitaiRef(model_id=4384, version_id=128713, base="https://civitai.com")),
    ("https://civitai.com/api/download/models/128713", CivitaiRef(version_id=128713, base="https://civitai.com")),
    ("https://civitai.com/api/download/models/128713?type=Model&format=SafeTensor&size=pruned&fp=fp16",
     CivitaiRef(version_id=128713, base="https://civitai.com",
                filters={"type": "Model", "format": "SafeTensor", "size": "pruned", "fp": "fp16"})),
    ("https://civitai.com/api/download/models/128713?fileId=131004",
     CivitaiRef(version_id=128713, file_id=131004, base="https://civitai.com")),
    ("urn:air:sd1:lora:civitai:4384@128713", CivitaiRef(model_id=4384, version_id=128713)),
    ("urn:air:sdxl:checkpoint:civitai:4384", CivitaiRef(model_id=4384)),
    ("air:sd1:lora:civitai:4384@128713", CivitaiRef(model_id=4384, version_id=128713)),
    ("urn:air:sd1:lora:civitai:4384@128713.safetensors", CivitaiRef(model_id=4384, version_id=128713)),
    ("civitai:128713", CivitaiRef(version_id=128713)),
    ("civitai:4384@128713", CivitaiRef(model_id=4384, version_id=128713)),
    ("https://civitai.red/models/4384", CivitaiRef(model_id=4384, base="https://civitai.red")),
    ("https://civitai.green/api/download/models/128713", CivitaiRef(version_id=128713, base="https://civitai.green")),
    ("https://www.civitai.com/models/4384", CivitaiRef(model_id=4384, base="https://civitai.com")),
    ("https://civitai.com/api/v1/model-versions/128713", CivitaiRef(version_id=128713, base="https://civitai.com")),
    ("https://civitai.com/model-versions/128713", CivitaiRef(version_id=128713, base="https://civitai.com")),
])
def test_civitai_url_forms(url, expected):
    assert civitai.matches(url)
    assert civitai.parse(url) == expected
    assert sources.pick(url) is civitai


def test_civitai_pasted_token_is_taken_but_never_shown():
    ref = civitai.parse("https://civitai.com/api/download/models/128713?token=fake-pasted-token-0123456789")
    assert ref.version_id == 128713 and ref.token == "fake-pasted-token-0123456789"
    assert "fake-pasted-token" not in repr(ref)
    assert "fake-pasted-token" not in sources.Plan("civitai", "https://civitai.com/api/download/models/1?token="
                                                   "fake-pasted-token-0123456789", ()).shown_url


def test_civitai_endpoint_host_is_civitai(monkeypatch):
    assert not civitai.matches("http://127.0.0.1:8765/models/4384")
    monkeypatch.setenv("CIVITAI_ENDPOINT", "http://127.0.0.1:8765/")
    assert civitai.matches("http://127.0.0.1:8765/models/4384")
    assert not civitai.matches("http://127.0.0.1:9999/models/4384")  # another port is another host
    assert civitai.api_base(civitai.parse("https://civitai.com/models/1")) == "http://127.0.0.1:8765"


def test_civitai_not_a_model_link():
    with pytest.raises(InputError, match="not a CivitAI model link"):
        civitai.parse("https://civitai.com/images/123")
    with pytest.raises(InputError, match="not a number"):
        civitai.parse("https://civitai.com/models/abc")


def _file(fid, name, ftype="Model", fmt="SafeTensor", primary=False, size="pruned", fp="fp16"):
    return {"id": fid, "name": name, "type": ftype, "primary": primary,
            "metadata": {"format": fmt, "size": size, "fp": fp}}


def test_pick_file_prefers_primary_then_safetensors():
    version = {"id": 1, "files": [_file(1, "a.ckpt", fmt="PickleTensor", primary=True),
                                  _file(2, "a.safetensors"), _file(3, "vae.safetensors", ftype="VAE")]}
    assert civitai.pick_file(version)["id"] == 2  # a pickle primary loses to a SafeTensor of the same type
    version["files"][1]["primary"], version["files"][0]["primary"] = True, False
    assert civitai.pick_file(version)["id"] == 2
    only_pickle = {"id": 1, "files": [_file(1, "a.ckpt", fmt="PickleTensor", primary=True)]}
    assert civitai.pick_file(only_pickle)["id"] == 1


def test_pick_file_by_id_and_filters():
    version = {"id": 1, "files": [_file(1, "full.safetensors", size="full", fp="fp32", primary=True),
                                  _file(2, "pruned.safetensors", size="pruned", fp="fp16"),
                                  _file(3, "vae.safetensors", ftype="VAE")]}
    assert civitai.pick_file(version, file_id=3)["id"] == 3
    assert civitai.pick_file(version, filters={"size": "pruned", "fp": "fp16"})["id"] == 2
    assert civitai.pick_file(version, filters={"type": "VAE"})["id"] == 3
    with pytest.raises(NotFoundError, match="no file with id 9"):
        civitai.pick_file(version, file_id=9)
    with pytest.raises(NotFoundError, match="no file with fp=bf16"):
        civitai.pick_file(version, filters={"fp": "bf16"})
    with pytest.raises(NotFoundError, match="no downloadable file"):
        civitai.pick_file({"id": 5, "files": []})


@pytest.mark.parametrize("model_type, file_type, kind", [
    ("Checkpoint", "Model", "checkpoint"), ("LORA", "Model", "lora"), ("LoCon", "Model", "lora"),
    ("DoRA", "Model", "lora"), ("VAE", "Model", "vae"), ("Checkpoint", "VAE", "vae"),
    ("TextualInversion", "Model", "embedding"), ("Checkpoint", "Negative", "embedding"),
    ("Controlnet", "Model", "controlnet"), ("Upscaler", "Model", "upscaler"), ("Poses", "Model", "other"),
    ("MotionModule", "Model", "other"), ("Checkpoint", "Archive", "other"),
])
def test_civitai_kind_table(model_type, file_type, kind):
    assert civitai.kind_for(model_type, file_type) == kind


def test_newest_published_version_with_files():
    model = {"id": 1, "name": "M", "modelVersions": [
        {"id": 30, "status": "Draft", "files": [_file(1, "x.safetensors")]},
        {"id": 20, "status": "Published", "files": []},
        {"id": 10, "status": "Published", "files": [_file(2, "y.safetensors")]}]}
    assert civitai.newest_version(model)["id"] == 10
    with pytest.raises(NotFoundError, match="no downloadable file"):
        civitai.newest_version({"id": 2, "name": "Empty", "modelVersions": [{"id": 1, "files": []}]})


def test_civitai_explain_wording():
    explain = civitai.make_explain("model 'X' version 'v1' (1)", None)
    login = explain(307, {"Location": "/login?returnUrl=%2Fmodels%2F1&reason=download-auth"}, b"", "http://h/x")
    assert isinstance(login, AuthError) and "needs a CivitAI API token" in str(login)
    assert explain(302, {"Location": "https://storage.example/file"}, b"", "http://h/x") is None
    assert "needs a CivitAI API token" in str(explain(401, {}, b'{"error":"Unauthorized"}', "http://h/x"))
    early = explain(403, {}, b'{"error":"early access","deadline":"2026-12-24T18:30:00.000Z"}', "http://h/x")
    assert isinstance(early, AuthError) and "Early Access until 2026-12-24 18:30 UTC" in str(early)
    assert isinstance(explain(404, {}, b"", "http://h/x"), NotFoundError)
    busy = explain(500, {}, b"", "http://h/x")  # the engine retries those, saying whose side it is
    assert isinstance(busy, Retryable) and "CivitAI is having trouble on its side" in busy.reason


def test_civitai_sidecar_meta_and_hash():
    version = {"id": 7, "modelId": 3, "name": "v2", "baseModel": "SDXL 1.0", "trainedWords": ["a b", " ", "c"],
               "model": {"name": "M", "type": "LORA"}}
    f = {"id": 9, "name": "m.safetensors", "type": "Model", "sizeKB": 2.0, "pickleScanResult": "Success",
         "hashes": {"SHA256": "AB" * 32, "AutoV2": "ABABABABAB"}}
    meta = civitai.sidecar_meta(version, f, "lora")
    assert meta["base_model"] == "SDXL 1.0" and meta["trigger_words"] == ["a b", "c"]
    assert meta["civitai"]["model_id"] == 3 and meta["civitai"]["version_id"] == 7 and meta["civitai"]["file_id"] == 9
    assert civitai.listed_sha256(f) == "ab" * 32
    assert civitai.listed_sha256({"hashes": {}}) is None
    assert civitai.scan_pending({"pickleScanResult": "Pending"}) and not civitai.scan_pending(f)


# ---------------------------------------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize("url, expected", [
    ("https://huggingface.co/alice/lora/blob/main/x.safetensors", HfRef("alice/lora", "x.safetensors", "main")),
    ("https://huggingface.co/alice/lora/resolve/main/x.safetensors?download=true",
     HfRef("alice/lora", "x.safetensors", "main")),
    ("https://huggingface.co/alice/lora/resolve/v1.0/sub/dir/x.safetensors",
     HfRef("alice/lora", "sub/dir/x.safetensors", "v1.0")),
    ("https://huggingface.co/alice/lora/blob/refs%2Fpr%2F3/x.safetensors",
     HfRef("alice/lora", "x.safetensors", "refs/pr/3")),
    ("https://huggingface.co/alice/lora/resolve/0123456789abcdef0123456789abcdef01234567/x.safetensors",
     HfRef("alice/lora", "x.safetensors", "0123456789abcdef0123456789abcdef01234567")),
    ("https://hf.co/alice/lora/resolve/main/x.safetensors", HfRef("alice/lora", "x.safetensors", "main")),
    ("https://huggingface.co/alice/sd-pipe", HfRef("alice/sd-pipe")),
    ("https://huggingface.co/alice/sd-pipe/tree/fp16", HfRef("alice/sd-pipe", None, "fp16")),
    ("https://huggingface.co/datasets/alice/stuff/resolve/main/x.safetensors",
     HfRef("alice/stuff", "x.safetensors", "main", "dataset")),
    ("alice/lora/x.safetensors", HfRef("alice/lora", "x.safetensors")),
    ("alice/lora/sub/x.safetensors", HfRef("alice/lora", "sub/x.safetensors")),
    ("alice/sd-pipe", HfRef("alice/sd-pipe")),
    ("hf://alice/lora/x.safetensors", HfRef("alice/lora", "x.safetensors")),
    ("alice/lora@v1.0/x.safetensors", HfRef("alice/lora", "x.safetensors", "v1.0")),
])
def test_hf_url_forms(url, expected):
    assert huggingface.matches(url)
    assert huggingface.parse(url) == expected
    assert sources.pick(url) is huggingface


def test_hf_endpoint_host_and_mirror(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:7000")
    ref = huggingface.parse("http://127.0.0.1:7000/alice/lora/resolve/main/x.safetensors")
    assert ref.repo_id == "alice/lora" and huggingface.endpoint_for(ref) == "http://127.0.0.1:7000"
    monkeypatch.delenv("HF_ENDPOINT")
    ref = huggingface.parse("https://hf-mirror.com/alice/lora/resolve/main/x.safetensors")
    assert huggingface.endpoint_for(ref) == "https://hf-mirror.com"


def test_hf_not_a_file_link():
    with pytest.raises(InputError, match="cannot tell which file"):
        huggingface.parse("https://huggingface.co/alice/lora/discussions/3")
    assert not huggingface.matches("some/local/folder")  # no model extension: not a Hub shorthand


def test_hf_generic_names_take_the_repo_name():
    ref = HfRef("stabilityai/sdxl-vae")
    assert huggingface.local_name(ref, "diffusion_pytorch_model.safetensors") == "sdxl-vae.safetensors"
    assert huggingface.local_name(ref, "sub/pytorch_lora_weights.safetensors") == "sdxl-vae.safetensors"
    assert huggingface.local_name(ref, "sdxl_vae.safetensors") == "sdxl_vae.safetensors"


def test_pipeline_files_takes_one_weight_set_per_component():
    listing = ["model_index.json", "README.md", "v1-5-pruned.safetensors", "v1-5-pruned.ckpt", ".gitattributes",
               "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
               "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
               "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_pytorch_model.msgpack",
               "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/pytorch_model.bin",
               "vae/config.json", "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
               "vae/diffusion_pytorch_model-00002-of-00002.safetensors",
               "vae/diffusion_pytorch_model.safetensors.index.json",
               "text_encoder_2/config.json", "text_encoder_2/model.fp16-00001-of-00002.safetensors",
               "text_encoder_2/model.fp16-00002-of-00002.safetensors", "text_encoder_2/model.safetensors.index.fp16.json",
               "text_encoder_2/model-00001-of-00002.safetensors", "text_encoder_2/model-00002-of-00002.safetensors",
               "text_encoder_2/model.safetensors.index.json",
               "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
               "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json",
               "safety_checker/config.json", "safety_checker/pytorch_model.bin", "images/sample.png"]
    got = huggingface.pipeline_files(listing)
    assert set(got) == {
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/config.json", "text_encoder/model.safetensors", "vae/config.json",
        "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
        "vae/diffusion_pytorch_model-00002-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
        "text_encoder_2/config.json", "text_encoder_2/model.fp16-00001-of-00002.safetensors",
        "text_encoder_2/model.fp16-00002-of-00002.safetensors", "text_encoder_2/model.safetensors.index.fp16.json",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
        "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json",
        "safety_checker/config.json", "safety_checker/pytorch_model.bin"}


@pytest.mark.parametrize("name, plain", [
    ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors"),
    ("model.fp16.safetensors", "model.safetensors"), ("pytorch_model.fp16.bin", "pytorch_model.bin"),
    ("model.safetensors.index.fp16.json", "model.safetensors.index.json"),
    ("model.fp16-00001-of-00002.safetensors", "model.fp16-00001-of-00002.safetensors"),
    ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"),
])
def test_plain_names_load_without_a_variant(name, plain):
    assert huggingface.plain_name(name) == plain


# ---------------------------------------------------------------------------------------------- Google Drive

ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@pytest.mark.parametrize("url, folder", [
    (f"https://drive.google.com/file/d/{ID}/view?usp=sharing", False),
    (f"https://drive.google.com/file/d/{ID}/view", False),
    (f"https://drive.google.com/file/d/{ID}/edit", False),
    (f"https://drive.google.com/file/d/{ID}", False),
    (f"https://drive.google.com/file/u/1/d/{ID}/view", False),
    (f"https://drive.google.com/open?id={ID}", False),
    (f"https://drive.google.com/uc?id={ID}&export=download", False),
    (f"https://drive.google.com/uc?export=download&id={ID}", False),
    (f"https://docs.google.com/uc?export=download&id={ID}", False),
    (f"https://drive.usercontent.google.com/download?id={ID}&export=download&confirm=t", False),
    (f"https://drive.google.com/drive/folders/{ID}?usp=sharing", True),
    (f"https://drive.google.com/drive/u/0/folders/{ID}", True),
    (f"https://drive.google.com/drive/mobile/folders/{ID}", True),
])
def test_gdrive_url_forms(url, folder):
    assert gdrive.matches(url)
    assert gdrive.parse(url) == gdrive.DriveRef(ID, folder)
    assert sources.pick(url) is gdrive


def test_gdrive_link_without_id():
    with pytest.raises(InputError, match="cannot find a file id"):
        gdrive.parse("https://drive.google.com/drive/my-drive")


def test_gdrive_error_wording():
    from gdown.exceptions import FileURLRetrievalError

    quota = gdrive.explain_error(FileURLRetrievalError("Failed to retrieve file url:\n\n\tToo many users have viewed "
                                                       "or downloaded this file recently."))
    assert "quota" in str(quota) and "\n" not in str(quota)
    denied = gdrive.explain_error(FileURLRetrievalError("Cannot retrieve the public link of the file. You may need "
                                                        "to change the permission to 'Anyone with the link'"))
    assert isinstance(denied, AuthError) and "Anyone with the link" in str(denied)


# ---------------------------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("url, module", [
    ("civitai.com/models/4384", civitai), ("huggingface.co/alice/lora/blob/main/x.safetensors", huggingface),
    (f"drive.google.com/file/d/{ID}/view", gdrive), ("https://example.com/x.safetensors", sources.direct),
    ("http://127.0.0.1:8000/file.bin", sources.direct),
])
def test_dispatch_table(url, module):
    assert sources.pick(sources.normalize_url(url)) is module


def test_dispatch_rejects_nonsense():
    with pytest.raises(InputError, match="paste an http"):
        sources.pick("ftp://example.com/x")
    with pytest.raises(InputError, match="no URL given"):
        sources.normalize_url("   ")
    with pytest.raises(InputError, match="unknown source"):
        sources.pick("x", source="dropbox")


def test_identify_refuses_a_non_hash():
    with pytest.raises(InputError, match="not a file hash"):
        civitai.identify("dreamshaper.safetensors")
