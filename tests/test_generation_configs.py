"""The bundled SD1 / SD2 / SDXL config folders: assembled offline, and true to the real architectures.

The real models cannot be downloaded here, but their parameter counts are public and exact: building each
component from the bundled config on the meta device (no memory) and counting proves the configs right.
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import tiny_models  # noqa: E402
from colab_sd.errors import GenerationError  # noqa: E402
from colab_sd.generation import configs  # noqa: E402

# Published sizes: SD1.5 UNet 859.52M, SD2 UNet 865.91M, SDXL UNet 2.567B, the KL-f8 VAE 83.65M,
# CLIP ViT-L/14 text 123.06M, OpenCLIP-H text without its last layer 340.39M, OpenCLIP-bigG text + projection 694.66M.
EXPECTED = {
    "sd1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """No Hugging Face cache at all and the Hub unreachable: the bundle alone must do."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked for a file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tmp_path / "configs"))
    return tmp_path / "no-hf-cache"


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_bundled_config_is_assembled_offline_and_matches_the_real_architecture(family, hf_cache, tmp_path):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = configs.config_folder(family)
    assert folder == tmp_path / "configs" / family
    assert (folder / "model_index.json").is_file() and (folder / configs.STAMP).is_file()
    with init_empty_weights():
        counts = {"unet": _count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))),
                  "vae": _count(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))),
                  "text_encoder": _count(CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")))}
        if family == "sdxl":
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            counts["text_encoder_2"] = _count(CLIPTextModelWithProjection(config))
    assert counts == EXPECTED[family]
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert tokenizer.model_max_length == 77
    assert tokenizer.pad_token == ("!" if family == "sd2" else "<|endoftext|>")
    if family == "sdxl":
        assert CLIPTokenizer.from_pretrained(folder / "tokenizer_2").pad_token == "!"


def test_assembled_folder_is_reused_and_rebuilt_when_the_bundle_changes(hf_cache, tmp_path):
    folder = configs.config_folder("sd1")
    marker = folder / "unet" / "marker.txt"
    marker.write_text("kept while the bundle is unchanged")
    assert configs.config_folder("sd1") == folder and marker.exists()
    (folder / configs.STAMP).write_text("an older bundle\n")
    assert configs.config_folder("sd1") == folder and not marker.exists()


def test_a_users_own_config_folder_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tmp_path / "configs"))
    own = tiny_models.save_config_folder(tiny_models.build_sd1(), tmp_path / "configs" / "sd1")
    assert configs.config_folder("sd1") == own
    assert not (own / configs.STAMP).exists()


def test_the_bundled_clip_tokenizer_gives_clips_token_ids(hf_cache):
    """Known CLIP ids (the reference's: `,` 267, start 49406, end 49407; "a" 320, "cat" 2368, "dog" 1929) and
    OpenCLIP's "!" padding for SDXL's second tokenizer, from the bundled merges alone."""
    from transformers import CLIPTokenizer

    folder = configs.config_folder("sdxl")
    first, second = (CLIPTokenizer.from_pretrained(folder / name) for name in ("tokenizer", "tokenizer_2"))
    assert len(first) == 49408 and first.get_vocab()[",</w>"] == 267
    assert first("a cat, dog").input_ids == [49406, 320, 2368, 267, 1929, 49407]
    assert second("a cat, dog").input_ids == first("a cat, dog").input_ids
    padded = second("a cat", padding="max_length", max_length=77).input_ids
    assert padded[:4] == [49406, 320, 2368, 49407] and set(padded[4:]) == {0}
    assert first("photograph of an astronaut").input_ids == [49406, 8853, 539, 550, 18376, 49407]
    assert not hf_cache.exists()


def test_unknown_family_has_no_bundle():
    with pytest.raises(GenerationError, match="no bundled config for the flux family"):
        configs.config_folder("flux")


@pytest.mark.parametrize("family,diffusers_type", [("sd1", "v1"), ("sd2", "v2"), ("sdxl", "xl_base")])
def test_full_size_original_layout_round_trips_through_diffusers_converters(family, diffusers_type):
    """At the real sizes (meta tensors: shapes, no memory): the bundled configs' models written in the original
    layout are what diffusers' single-file converters read back, and what the probe and diffusers both call
    this family. This ties the tiny tests' single files to real CivitAI checkpoints."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from colab_sd import probe

    folder = configs.BUNDLED / family
    with init_empty_weights():
        unet_config = UNet2DConditionModel.load_config(folder / "unet")
        vae_config = AutoencoderKL.load_config(folder / "vae")
        pipe = type("Parts", (), {})()
        pipe.unet = UNet2DConditionModel.from_config(unet_config)
        pipe.vae = AutoencoderKL.from_config(vae_config)
        pipe.text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        pipe.text_encoder_2 = (CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
                               if family == "sdxl" else None)
    original = tiny_models.to_original(pipe, family)

    def shapes(state):
        return {k.removeprefix("text_model."): tuple(v.shape) for k, v in state.items() if not k.endswith("position_ids")}

    assert shapes(sfu.convert_ldm_unet_checkpoint(original, unet_config)) == shapes(pipe.unet.state_dict())
    assert shapes(sfu.convert_ldm_vae_checkpoint(original, vae_config)) == shapes(pipe.vae.state_dict())
    if family == "sd2":
        text = sfu.convert_open_clip_checkpoint(pipe.text_encoder, original, prefix="cond_stage_model.model.")
    else:
        text = sfu.convert_ldm_clip_checkpoint(original)
    assert shapes(text) == shapes(pipe.text_encoder.state_dict())
    if family == "sdxl":
        text_2 = sfu.convert_open_clip_checkpoint(pipe.text_encoder_2, original, prefix="conditioner.embedders.1.model.")
        assert shapes(text_2) == shapes(pipe.text_encoder_2.state_dict())
    assert sfu.infer_diffusers_model_type(original) == diffusers_type
    found = probe.inspect_keys({k: list(v.shape) for k, v in original.items()})
    assert (found.kind, found.family) == ("checkpoint", family)
