"""The CivitAI API client against the local fake: search with CivitAI's own parameters and cursor paging, content
levels decided per image, every host (the April 2026 .com that hid mature models), politeness (one request per
need, 429 / Retry-After, CivitAI's own outages named as such), tokens only in headers to API hosts, thumbnails
from the CDN without credentials, and the fileId fault of issue 12."""
from __future__ import annotations

import io

import pytest

import colab_sd
from colab_sd.civitai import Client, SearchQuery, catalog, levels, search
from colab_sd.civitai import client as client_module
from colab_sd.civitai.local import identify
from colab_sd.errors import DownloadError, InputError, NotFoundError
from colab_sd.library import list_models, read_sidecar
from colab_sd.tokens import TokenStore
from fakes.civitai import TOKEN, FakeCivitai, FakeFile
from fakes.civitai_catalog import FakeImage
from fakes.fixtures import file_sha256, sha256


def _tokens(value=TOKEN):
    return TokenStore(civitai=value, use_colab=False)


@pytest.fixture
def shelf(civitai, model_bytes):
    """Five models: PG LoRAs, one with an X image beside its PG one, one mature-only, a checkpoint."""
    lora = model_bytes["lora"]
    civitai.add_version(model_id=100, version_id=1001, model_name="Paper Lantern Style", model_type="LORA",
                        base_model="SDXL 1.0", trained_words=["papl style"], downloads=500, thumbs_up=90,
                        files=[FakeFile(10011, "paper_lantern.safetensors", lora)])
    civitai.add_version(model_id=200, version_id=2001, model_name="Paper Crane", model_type="LORA",
                        base_model="SD 1.5", downloads=900, thumbs_up=40,
                        images=[FakeImage(20011, level=levels.X), FakeImage(20012, level=levels.PG)],
                        files=[FakeFile(20021, "crane.safetensors", model_bytes["lora_xl"])])
    civitai.add_version(model_id=300, version_id=3001, model_name="Paper Noir", model_type="LORA",
                        base_model="SD 1.5", nsfw=True, images=[FakeImage(30011, level=levels.R)],
                        files=[FakeFile(30021, "noir.safetensors", model_bytes["embedding"])])
    civitai.add_version(model_id=400, version_id=4001, model_name="Paper Checkpoint", model_type="Checkpoint",
                        base_model="SD 1.5", files=[FakeFile(40021, "paper_ckpt.safetensors", model_bytes["vae"])])
    civitai.add_version(model_id=500, version_id=5001, model_name="Paper Vae", model_type="VAE",
                        base_model="SDXL 1.0", files=[FakeFile(50021, "paper_vae.safetensors", model_bytes["noise"])])
    return civitai


def test_search_sends_civitai_parameters_and_pages_by_cursor(shelf):
    client = Client(_tokens())
    query = SearchQuery.build("paper", types=["lora", "locon"], base_models=["SD 1.5", "SDXL 1.0"],
                              sort="downloads", limit=1)
    first = search(client, query)
    sent = shelf.hits("/api/v1/models")[-1]["full_path"]
    for part in ("query=paper", "types=LORA", "types=LoCon", "baseModels=SD+1.5", "baseModels=SDXL+1.0",
                 "sort=Most+Downloaded", "period=AllTime", "limit=1"):
        assert part in sent
    assert "nsfw=" not in sent  # PG: the API's own default mask
    assert [c.name for c in first.cards] == ["Paper Crane"] and first.next_cursor == "1"
    second = search(client, SearchQuery(**{**query.__dict__, "cursor": first.next_cursor}))
    assert [c.name for c in second.cards] == ["Paper Lantern Style"] and second.next_cursor is None
    card = second.cards[0]
    assert (card.type, card.base_models, card.downloads, card.thumbs_up) == ("LORA", ["SDXL 1.0"], 500, 90)
    assert card.to_dict()["thumbnail"].endswith("/width=320,optimized=true/10011.jpeg")


def test_content_level_is_decided_per_image(shelf):
    client = Client()
    pg = search(client, SearchQuery.build("paper", types=["lora"]))
    assert sorted(c.name for c in pg.cards) == ["Paper Crane", "Paper Lantern Style"]  # R-only model absent
    crane = next(c for c in pg.cards if c.name == "Paper Crane")
    # The model's first image is X: the card shows its PG image instead and counts the hidden one.
    assert crane.image["id"] == 20012 and crane.hidden_images == 1
    mature = search(client, SearchQuery.build("paper", types=["lora"], level="R"))
    assert "nsfw=true" in shelf.hits("/api/v1/models")[-1]["full_path"]
    noir = next(c for c in mature.cards if c.name == "Paper Noir")
    assert noir.image["id"] == 30011
    crane = next(c for c in mature.cards if c.name == "Paper Crane")
    assert crane.image["id"] == 20012 and crane.hidden_images == 1  # X stays hidden at R
    assert levels.image_level({"nsfwLevel": "Mature"}) == levels.R and levels.image_level({}) == levels.BLOCKED
    with pytest.raises(InputError, match="unknown content level"):
        SearchQuery.build("x", level="spicy")


def test_image_meta_shapes(shelf):
    """`meta` is null unless asked for; nested `{id, meta}` without flatMeta; flat with it (civitai PR #2395/#2423)."""
    from colab_sd.civitai.meta import from_meta

    meta = {"prompt": "lanterns", "seed": 5, "civitaiResources": [{"type": "lora", "modelVersionId": 1001}]}
    shelf.add_image(FakeImage(9901, meta=meta), 1001)
    client = Client()
    bare, _ = client.images([("imageId", 9901)])
    nested, _ = client.images([("imageId", 9901), ("withMeta", "true")])
    flat, _ = client.images([("imageId", 9901), ("withMeta", "true"), ("flatMeta", "true")])
    assert bare["items"][0]["meta"] is None and bare["items"][0]["nsfwLevel"] == "None"
    assert nested["items"][0]["meta"] == {"id": 9901, "meta": meta} and flat["items"][0]["meta"] == meta
    for item in (nested, flat):
        got = from_meta(item["items"][0]["meta"])
        assert got.fields["seed"] == 5 and got.resources[0].version_id == 1001


def test_empty_page_with_a_cursor_is_followed(shelf):
    shelf.empty_pages = 2  # civitai #1848: empty items, yet a nextCursor
    page = search(Client(), SearchQuery.build("paper lantern"))
    assert [c.name for c in page.cards] == ["Paper Lantern Style"]
    assert len(shelf.hits("/api/v1/models")) == 3


def test_one_request_per_need(shelf):
    client = Client(_tokens())
    query = SearchQuery.build("paper", types=["lora"])
    search(client, query)
    search(Client(_tokens()), query)  # another client in the same kernel: the cache answers
    client.version(1001)
    client.version(1001)
    assert client.by_hash(sha256(b"nothing")) is None and client.by_hash(sha256(b"nothing")) is None
    paths = [r["full_path"] for r in shelf.hits("/api/v1/")]
    assert len(paths) == len(set(paths)) == 3


def test_bad_filters_are_one_line():
    with pytest.raises(InputError, match="unknown model type 'sampler'"):
        SearchQuery.build("x", types=["sampler"])
    with pytest.raises(InputError, match="unknown sort"):
        SearchQuery.build("x", sort="best")
    for limit in (500, 0, "many"):
        with pytest.raises(InputError, match="limit must be a whole number between 1 and 100"):
            SearchQuery.build("x", limit=limit)


@pytest.fixture
def two_hosts(model_bytes, monkeypatch):
    """civitai.com as it was on 2026-04-15 (mature content hidden) and civitai.red, sharing one CDN."""
    monkeypatch.delenv("CIVITAI_ENDPOINT", raising=False)
    red = FakeCivitai().start()
    com = FakeCivitai(hides_mature=True, cdn=red.cdn).start()
    for fake in (com, red):
        fake.add_version(model_id=700, version_id=7001, model_name="Velvet Night", model_type="LORA",
                         images=[FakeImage(70011, level=levels.X)],
                         files=[FakeFile(70021, "velvet.safetensors", model_bytes["lora"])])
    yield com, red
    com.stop()
    red.stop()


def test_a_lookup_that_finds_nothing_on_one_host_asks_the_other(two_hosts, models):
    com, red = two_hosts
    client = Client(_tokens(), hosts={"civitai.com": com.base, "civitai.red": red.base})
    found = client.by_hash(file_sha256_of(red, 7001))
    assert found is not None and found[0]["id"] == 7001 and found[1] == red.base
    assert com.hits("/api/v1/model-versions/by-hash/") and red.hits("/api/v1/model-versions/by-hash/")
    # A civitai.red link asks .red first (the API host follows the user's own link).
    version, base = client.version(7001, link="https://civitai.red/models/700?modelVersionId=7001")
    assert base == red.base and not com.hits("/api/v1/model-versions/7001")
    # Identify in the library: the file is unknown to .com, known to .red.
    (models / "lora").mkdir()
    (models / "lora" / "mystery.safetensors").write_bytes(red.versions[7001].files[0].data)
    done = identify(list_models(models), client)
    assert done[0].found is not None and done[0].found["civitai"]["version_id"] == 7001
    side = read_sidecar(models / "lora" / "mystery.safetensors")
    assert side["civitai"]["model_name"] == "Velvet Night"
    # Its preview is X: nothing mature is saved to disk by default.
    assert done[0].preview is None and not list((models / "lora").glob("*.preview.*"))
    assert red.cdn.auth_seen == 0


def file_sha256_of(fake, version_id):
    return fake.versions[version_id].files[0].sha256


def test_rate_limit_and_outages(shelf, monkeypatch):
    monkeypatch.setattr(client_module, "BACKOFF", 0.01)
    shelf.api_failures = [(429, {"Retry-After": "0"}), 503]
    assert Client().version(1001)[0]["id"] == 1001 and len(shelf.hits("/api/v1/")) == 3
    shelf.api_failures = [(429, {"Retry-After": "3600"})]
    with pytest.raises(DownloadError, match=r"CivitAI asks to slow down \(HTTP 429\): try again in 3600 s"):
        Client().version(2001)
    shelf.api_failures = [524, 524, 524]
    with pytest.raises(DownloadError) as info:
        Client().version(3001)
    assert "CivitAI is having trouble on its side (HTTP 524: CivitAI took too long to answer)" in str(info.value)
    assert "not your connection" in str(info.value)
    with pytest.raises(NotFoundError, match="CivitAI has no model version 999"):
        Client().version(999)


def test_no_wait_before_the_first_request(shelf, monkeypatch):
    """Issue 13 B6: every metadata call used to sleep 0.5 s before asking; only a retry may wait now."""
    from colab_sd.sources import metadata

    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds} s before a first request")

    monkeypatch.setattr(client_module.time, "sleep", no_sleep)
    assert Client().version(1001)[0]["id"] == 1001
    assert metadata.get_json(f"{shelf.base}/api/v1/model-versions/2001", service="CivitAI", missing="gone",
                             auth_error=RuntimeError("auth"))["id"] == 2001


def test_token_only_in_the_header_to_api_hosts_never_to_the_cdn(shelf):
    client = Client(_tokens())
    page = search(client, SearchQuery.build("paper"))
    for card in page.cards:
        data, ctype = client_module.fetch_image(levels.sized(card.image["url"]))
        from PIL import Image

        assert ctype == "image/jpeg" and Image.open(io.BytesIO(data)).size[0] == 320
    api = shelf.hits("/api/v1/")
    assert api and all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in api)
    assert all(TOKEN not in r["full_path"] for r in shelf.requests + shelf.cdn.requests)
    assert len(shelf.cdn.requests) == len(page.cards) and shelf.cdn.auth_seen == 0
    assert all("Authorization" not in r["headers"] for r in shelf.cdn.requests)
    assert all("/width=320,optimized=true/" in r["path"] for r in shelf.cdn.requests)


def test_thumbnail_sizes():
    url = "https://image.civitai.com/acct/uuid-1/original=true/31001.jpeg"
    assert levels.sized(url) == "https://image.civitai.com/acct/uuid-1/width=320,optimized=true/31001.jpeg"
    assert levels.sized(url, 700) == "https://image.civitai.com/acct/uuid-1/width=800/31001.jpeg"
    assert levels.sized("https://image.civitai.com/acct/uuid-1/31001.jpeg", 96).endswith(
        "/uuid-1/width=96,optimized=true/31001.jpeg")
    assert levels.sized("https://example.com/a.png") == "https://example.com/a.png"


def test_access_notes_before_a_download(shelf):
    version = dict(Client().version(1001)[0])
    assert catalog.access_notes(version, has_token=True) == []
    assert "No CivitAI token set" in catalog.access_notes(version, has_token=False)[0]
    early = {**version, "paidAccess": {"permanent": False, "endsAt": "2099-01-02T03:04:00Z"}}
    assert "Early Access until 2099-01-02 03:04 UTC" in catalog.access_notes(early, True)[0]
    assert not catalog.can_download(early) and catalog.can_download(version)
    assert "allows Generation only" in catalog.access_notes({**version, "usageControl": "Generation"}, True)[0]


# ---------------------------------------------------------------------------------------------- issue 12, item 5


@pytest.fixture
def multi_file(civitai, model_bytes):
    """A version with bf16, fp8, int8 and GGUF files whose ?type=&format=&fp= links CivitAI answers with 404."""
    files = [FakeFile(9101, "big_bf16.safetensors", model_bytes["lora"], fp="bf16", size="full", primary=True),
             FakeFile(9102, "big_fp8.safetensors", model_bytes["lora_xl"], fp="fp8", size="full"),
             FakeFile(9103, "big_int8.safetensors", model_bytes["embedding"], fp="int8", size="full"),
             FakeFile(9104, "big_q8.gguf", model_bytes["noise"], format="GGUF", fp=None, size=None)]
    civitai.add_version(model_id=910, version_id=9100, model_name="Big Model", model_type="LORA", files=files,
                        filters_404=True)
    return civitai


def test_file_id_link_is_kept_and_downloads_that_file(multi_file, model_bytes, models):
    url = "https://civitai.com/api/download/models/9100?fileId=9102"
    path = colab_sd.download(url, models_dir=models, tokens=_tokens())
    assert path.name == "big_fp8.safetensors" and file_sha256(path) == sha256(model_bytes["lora_xl"])
    downloads = multi_file.hits("/api/download/models/9100")
    assert downloads and all(r["query"] == {"fileId": "9102"} for r in downloads)
    assert read_sidecar(path)["civitai"]["file_id"] == 9102
    # A model page link names no file: the primary one, by the bare version link (no rebuilt filters).
    path = colab_sd.download("https://civitai.com/models/910", models_dir=models, tokens=_tokens())
    assert path.name == "big_bf16.safetensors" and multi_file.hits("/api/download/models/9100")[-1]["query"] == {}


def test_a_download_404_after_good_metadata_is_not_called_removed(multi_file, models):
    url = "https://civitai.com/api/download/models/9100?type=Model&format=SafeTensor&fp=int8"
    with pytest.raises(NotFoundError) as info:
        colab_sd.download(url, models_dir=models, tokens=_tokens())
    text = str(info.value)
    assert "found model 'Big Model'" in text and "answered 404" in text and "removed" not in text
    # What the user gave was kept as given.
    assert multi_file.hits("/api/download/models/9100")[-1]["query"] == {"type": "Model", "format": "SafeTensor",
                                                                         "fp": "int8"}
    assert not [p for p in models.rglob("*") if p.is_file()]


def test_an_image_made_with_hires_fix_is_recreated_with_it():
    """CivitAI's meta carries A1111's Hires keys; recreate fills the same hires_* fields `generate --from` does."""
    from colab_sd.civitai.meta import from_parameters
    from colab_sd.infotext.fields import from_civitai_meta

    meta = {"prompt": "a lighthouse", "seed": 5, "steps": 20, "cfgScale": 6, "Size": "512x768",
            "Hires upscale": "2", "Hires steps": "10", "Hires upscaler": "Latent", "Denoising strength": "0.55"}
    generation = from_parameters(from_civitai_meta(meta))
    fields = generation.fields
    assert fields["hires_scale"] == 2 and fields["hires_steps"] == 10 and fields["hires_upscaler"] == "Latent"
    assert fields["hires_denoise"] == 0.55
    assert not any("hires" in note for note in generation.notes)
