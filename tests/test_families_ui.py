"""The newer families from the notebook's Generate panel, with real widgets and tiny real models on the CPU:
the panel says before Generate what a transformer-only file still needs (and how big it is), shows the component
download's own progress while fetching it from the (fake, 127.0.0.1) Hub, then the picture; and every family
(Z-Image, Flux dev / schnell, Chroma, SD3, Flux.2 Klein) generates inline from a click.
"""
from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("ipywidgets")
os.environ["HF_HUB_OFFLINE"] = "1"

import tiny_families  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402
from colab_sd.ui.app import App  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("families-ui")
    built = tiny_families.build_library(root)
    yield root, built
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(library, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, library[0], tmp_path / "outputs", home=False)


def _click(panel, model: str, prompt: str = "a photo of a dog") -> None:
    panel.model.value = model
    panel.prompt.value = prompt
    panel.steps.value = 2
    panel.size.value = "Custom"
    panel.width.value, panel.height.value = 64, 64
    panel.seed.value = 5
    panel.button.click()


def test_the_panel_says_what_it_will_fetch_then_shows_the_download(library, tmp_path, monkeypatch, hub):
    import huggingface_hub.constants as hf_constants

    root, built = library
    zimage = built["zimage"]
    hub.add_repo("Comfy-Org/z_image_turbo", {
        "split_files/text_encoders/qwen_3_4b.safetensors": zimage["text_encoder"].read_bytes(),
        "split_files/vae/ae.safetensors": zimage["vae"].read_bytes()})
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    lib = tmp_path / "lib"
    (lib / "checkpoint").mkdir(parents=True)
    shutil.copyfile(zimage["single"], lib / "checkpoint" / "z_image_turbo.safetensors")
    monkeypatch.setenv("COLAB_SD_HOME", str(lib))

    panel = App(models_dir=lib, outputs_dir=tmp_path / "out").generate
    panel.model.value = "z_image_turbo.safetensors"
    said = panel.needs.value
    assert "Z-Image Turbo:" in said and "to fetch on the first Generate into text_encoder/, vae/" in said
    assert "Qwen3-4B text encoder (bf16) 8.0 GB" in said and "Comfy-Org/z_image_turbo" in said

    statuses, bars = [], []
    panel.status.observe(lambda c: statuses.append(c["new"]), names="value")
    panel.bar.observe(lambda c: bars.append(c["new"]), names="value")
    _click(panel, "z_image_turbo.safetensors")
    assert "✓ 1 image" in panel.status.value, panel.status.value
    fetching = [s for s in statuses if "fetching qwen_3_4b.safetensors:" in s]
    assert fetching and " of " in fetching[-1] and "/s" in fetching[-1]  # the download's own numbers, live
    assert any("fetching Qwen3-4B text encoder" in s for s in statuses)  # announced with its size first
    assert len(panel.gallery_items) == 1

    panel.set_library(panel.entries)  # the next look: both parts are in the library now
    panel._model_changed()
    assert "from the library" in panel.needs.value and "qwen_3_4b.safetensors" in panel.needs.value
    assert "nothing to fetch" in panel.needs.value


@pytest.mark.parametrize("model, family", [
    ("tiny-flux-dev.safetensors", "Flux dev"), ("tiny-flux-schnell-Q8_0.gguf", "Flux schnell"),
    ("tiny-chroma.safetensors", "Chroma"), ("tiny-sd3.safetensors", "SD3 Medium"),
    ("tiny-klein.safetensors", "Flux.2 Klein"), ("tiny-zimage-Q8_0.gguf", "Z-Image Turbo"),
])
def test_every_family_generates_inline_from_a_click(library, tmp_path, monkeypatch, model, family):
    root, _ = library
    monkeypatch.setenv("COLAB_SD_HOME", str(root))
    panel = App(models_dir=root, outputs_dir=tmp_path / "out").generate
    panel.model.value = model
    assert panel.needs.value.startswith("<") and family in panel.needs.value
    assert "nothing to fetch" in panel.needs.value  # the shared library has every encoder and VAE
    _click(panel, model)
    assert "✓ 1 image" in panel.status.value, panel.status.value
    item = panel.gallery_items[0]
    assert item.path.is_file() and f"Model: {model.rsplit('.', 1)[0]}" in item.parameters
