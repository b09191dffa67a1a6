"""Direct links: the engine fetches, the probe decides the folder, the sidecar records it."""
import pytest

import colab_sd
from colab_sd.errors import ErrorPageError, IntegrityError
from colab_sd.events import Collect, Completed, Info
from colab_sd.library import read_sidecar, write_sidecar
from colab_sd.transfer import TransferOptions
from fakes.fixtures import file_sha256, sha256
from servers import Route


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_lora_is_placed_by_its_header(server, models, model_bytes):
    server.route("/dl/1", Route(body=model_bytes["lora"], disposition='attachment; filename="detail_tweaker.safetensors"'))
    events = Collect()
    path = colab_sd.download(server.url("/dl/1"), models_dir=models, on_event=events)
    assert path == models / "lora" / "detail_tweaker.safetensors"
    assert file_sha256(path) == sha256(model_bytes["lora"])
    side = read_sidecar(path)
    assert side == {**side, "kind": "lora", "family": "sd1", "source_name": "direct", "source": server.url("/dl/1"),
                    "sha256": sha256(model_bytes["lora"]), "size": len(model_bytes["lora"]), "base_model": "SD1.x"}
    assert any("→ lora/" in e.message for e in events.of(Info))
    assert _files(models) == ["lora/detail_tweaker.safetensors", "lora/detail_tweaker.safetensors.json"]


@pytest.mark.parametrize("key, folder", [("checkpoint_xl", "checkpoint"), ("vae", "vae"), ("embedding", "embedding"),
                                         ("controlnet", "controlnet"), ("upscaler", "upscaler")])
def test_other_kinds_by_header(key, folder, server, models, model_bytes):
    server.route(f"/files/{key}.safetensors", Route(body=model_bytes[key]))
    path = colab_sd.download(server.url(f"/files/{key}.safetensors"), models_dir=models)
    assert path == models / folder / f"{key}.safetensors" and file_sha256(path) == sha256(model_bytes[key])


def test_unknown_file_stays_in_other_and_says_why(server, models, model_bytes):
    server.route("/x.bin", Route(body=model_bytes["noise"]))
    events = Collect()
    path = colab_sd.download(server.url("/x.bin"), models_dir=models, on_event=events)
    assert path == models / "other" / "x.bin"
    assert any("could not tell what this file is" in e.message and "--type" in e.message for e in events.of(Info))


def test_type_option_wins(server, models, model_bytes):
    server.route("/l.safetensors", Route(body=model_bytes["lora"]))
    path = colab_sd.download(server.url("/l.safetensors"), kind="controlnet", models_dir=models)
    assert path == models / "controlnet" / "l.safetensors" and read_sidecar(path)["kind"] == "controlnet"


def test_unknown_kind_download_resumes_from_its_part(server, models, model_bytes):
    data = model_bytes["lora"]
    route = server.route("/big.safetensors", Route(body=data, etag='"v1"', drop_at=[10_000]))
    with pytest.raises(Exception):
        colab_sd.download(server.url("/big.safetensors"), models_dir=models, options=TransferOptions(retries=0))
    assert (models / "other" / "big.safetensors.part").stat().st_size == 10_000  # a stable place to resume from
    path = colab_sd.download(server.url("/big.safetensors"), models_dir=models)
    assert path == models / "lora" / "big.safetensors" and file_sha256(path) == sha256(data)
    assert server.hits("/big.safetensors")[-1]["headers"].get("Range") == "bytes=10000-"
    assert _files(models) == ["lora/big.safetensors", "lora/big.safetensors.json"]
    assert not route.drop_at


def test_same_name_other_contents_is_not_overwritten(server, models, model_bytes):
    (models / "lora").mkdir()
    mine = models / "lora" / "style.safetensors"
    mine.write_bytes(model_bytes["lora_xl"])
    write_sidecar(mine, {"source": "https://example.com/mine", "kind": "lora"})
    server.route("/style.safetensors", Route(body=model_bytes["lora"]))
    events = Collect()
    path = colab_sd.download(server.url("/style.safetensors"), models_dir=models, on_event=events)
    assert path == models / "lora" / "style-2.safetensors" and file_sha256(path) == sha256(model_bytes["lora"])
    assert file_sha256(mine) == sha256(model_bytes["lora_xl"])
    assert any("saved as style-2.safetensors" in e.message for e in events.of(Info))


def test_same_file_from_another_link_is_kept_once(server, models, model_bytes):
    server.route("/a/style.safetensors", Route(body=model_bytes["lora"]))
    server.route("/b/style.safetensors", Route(body=model_bytes["lora"]))
    first = colab_sd.download(server.url("/a/style.safetensors"), models_dir=models)
    second = colab_sd.download(server.url("/b/style.safetensors"), models_dir=models)
    assert first == second == models / "lora" / "style.safetensors"
    assert _files(models) == ["lora/style.safetensors", "lora/style.safetensors.json"]
    side = read_sidecar(first)
    assert side["source"] == server.url("/a/style.safetensors")
    assert side["also_sources"] == [server.url("/b/style.safetensors")]
    served = len(server.requests)
    assert colab_sd.download(server.url("/b/style.safetensors"), models_dir=models) == first  # known link now
    assert len(server.requests) == served


def test_repeat_download_is_skipped_without_fetching(server, models, model_bytes):
    server.route("/l.safetensors", Route(body=model_bytes["lora"]))
    first = colab_sd.download(server.url("/l.safetensors"), models_dir=models)
    events = Collect()
    assert colab_sd.download(server.url("/l.safetensors"), models_dir=models, on_event=events) == first
    assert len(server.hits("/l.safetensors")) == 1
    done = events.of(Completed)
    assert len(done) == 1 and done[0].skipped and done[0].sha256 == sha256(model_bytes["lora"])
    assert any("already in the library" in e.message for e in events.of(Info))


def test_user_sha256_mismatch_and_error_page(server, models, model_bytes):
    server.route("/l.safetensors", Route(body=model_bytes["lora"]))
    with pytest.raises(IntegrityError):
        colab_sd.download(server.url("/l.safetensors"), models_dir=models, sha256="0" * 64)
    server.route("/login-wall.safetensors", Route(body=b"<!DOCTYPE html><html><title>Sign in</title></html>",
                                                  content_type="text/html"))
    with pytest.raises(ErrorPageError):
        colab_sd.download(server.url("/login-wall.safetensors"), models_dir=models)
    assert [f for f in _files(models) if not f.endswith((".part", ".part.json"))] == []
