"""Generation on CPU with tiny random models, offline: real diffusers pipelines, real files, real PNGs.

The tiny models (tests/tiny_models.py) are built once per session: SD1, SD2 and SDXL layouts as original
single-file checkpoints and as diffusers folders, kohya and peft LoRAs, embeddings and VAEs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Optional

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # no Hub access: single-file loading must work from local configs

import numpy as np  # noqa: E402
import torch  # noqa: E402

import colab_sd  # noqa: E402
import tiny_models  # noqa: E402
from colab_sd.errors import GenerationError, InputError, NotFoundError  # noqa: E402
from colab_sd.events import Collect, Completed, Info, StepProgress  # noqa: E402
from colab_sd.generation import (SAMPLERS, SCHEDULES, GenerationRequest, load_count, parse_parameters,  # noqa: E402
                                 read_png_parameters, schedules_for, trigger_words)
from colab_sd.generation.cache import CACHE  # noqa: E402
from colab_sd.generation.metadata import parse_hash_list  # noqa: E402
from colab_sd.library import write_sidecar  # noqa: E402

# diffusers' schedulers trip numpy 2 deprecation warnings by the thousand; they are not ours to fix.
pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")]

SMALL = dict(steps=2, width=64, height=64, seed=1234)


@pytest.fixture(scope="session")
def library(tmp_path_factory):
    """A private copy of the tiny models library, with the tiny config folders as the config cache."""
    return tiny_models.copy_library(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def _offline(offline):
    """Every test here runs offline (conftest.offline)."""


def run(**fields):
    return colab_sd.generate(**{**SMALL, **fields})


def pixels(result, i=0) -> np.ndarray:
    return np.asarray(result.images[i], dtype=np.int16)


def differs(a, b) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


# ---------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("model,family,fmt", [
    ("tiny-sd1", "sd1", "single_file"),
    ("tiny-sd1-diffusers", "sd1", "diffusers"),
    ("tiny-sdxl.safetensors", "sdxl", "single_file"),
    ("tiny-sdxl-diffusers", "sdxl", "diffusers"),
    ("tiny-sd2-768-v", "sd2", "single_file"),
    ("tiny-sd1-pickle.ckpt", "sd1", "single_file"),
])
def test_family_detection_and_generation_for_each_input_kind(model, family, fmt):
    result = run(model=model, prompt="a photo of a cat")
    assert result.family == family
    assert CACHE.entry.ref.format == fmt
    assert result.images[0].size == (64, 64)
    assert len(result.paths) == 1 and result.paths[0].is_file()
    assert np.isfinite(pixels(result)).all() and pixels(result).std() > 0


def test_model_by_absolute_path(library):
    result = run(model=str(library / "checkpoint" / "tiny-sd1.safetensors"), prompt="a cat")
    assert result.model == "tiny-sd1" and result.family == "sd1"


def test_single_file_loads_the_same_weights_as_the_folder(library):
    """The original-layout file (fp16, as CivitAI ships them) holds the folder's weights after conversion."""
    from diffusers import StableDiffusionXLPipeline

    run(model="tiny-sdxl", prompt="a cat")
    loaded = CACHE.entry.pipe
    folder = StableDiffusionXLPipeline.from_pretrained(str(library / "checkpoint" / "tiny-sdxl-diffusers"))
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(loaded, component).state_dict(), getattr(folder, component).state_dict()
        assert set(ours) == set(theirs), component
        for key, value in theirs.items():
            assert torch.equal(ours[key], value.half().float()), f"{component}.{key}"


def test_sd2_single_file_is_v_prediction_and_512_base_is_epsilon(library):
    run(model="tiny-sd2-768-v", prompt="a cat")
    assert CACHE.entry.pipe.scheduler.config.prediction_type == "v_prediction"
    base = library / "checkpoint" / "tiny-sd2-512-base.safetensors"
    if not base.exists():
        os.link(library / "checkpoint" / "tiny-sd2-768-v.safetensors", base)
    result = run(model="tiny-sd2-512-base", prompt="a cat")
    assert result.info["prediction"] == "epsilon"
    assert CACHE.entry.pipe.scheduler.config.prediction_type == "epsilon"
    forced = run(model="tiny-sd2-512-base", prompt="a cat", prediction="v_prediction")
    assert forced.info["prediction"] == "v_prediction"


def test_v_prediction_sdxl_single_file_gets_a_zero_snr_v_scheduler(library, tmp_path):
    """NoobAI-style v-pred SDXL files carry an empty `v_pred` key (and often `ztsnr`)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(library / "checkpoint" / "tiny-sdxl.safetensors"))
    state["v_pred"], state["ztsnr"] = torch.tensor([]), torch.tensor([])
    path = tmp_path / "tiny-sdxl-vpred.safetensors"
    save_file(state, str(path))
    collect = Collect()
    result = run(model=str(path), prompt="a cat", on_event=collect)
    config = CACHE.entry.pipe.scheduler.config
    assert result.info["prediction"] == "v_prediction"
    assert config.prediction_type == "v_prediction" and config.rescale_betas_zero_snr
    assert np.isfinite(pixels(result)).all() and pixels(result).std() > 0
    assert any("v-prediction" in e.message for e in collect.of(Info) if e.message.startswith("loading"))
    # The zero-SNR marker reaches every sampler's scheduler, or the sampler is refused in one line.
    euler = run(model=str(path), prompt="a cat", sampler="Euler a")
    assert CACHE.entry.pipe.scheduler.config.rescale_betas_zero_snr and euler.images
    with pytest.raises(InputError, match="zero terminal SNR, which diffusers' Heun sampler cannot follow"):
        run(model=str(path), prompt="a cat", sampler="Heun")


def test_sidecar_config_folder_is_used_for_a_single_file(library, tmp_path, monkeypatch):
    """A single file whose family config is not in the cache loads from the folder its sidecar names."""
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tmp_path / "empty-cache"))
    target = library / "checkpoint" / "custom" / "tiny-custom.safetensors"
    target.parent.mkdir(exist_ok=True)
    if not target.exists():
        os.link(library / "checkpoint" / "tiny-sd1.safetensors", target)
    write_sidecar(target, {"config": str(library / "_configs" / "sd1")})
    result = run(model="custom/tiny-custom", prompt="a cat")
    assert result.family == "sd1"


def test_single_file_offline_uses_the_bundled_tokenizer_and_names_the_real_cause(library, tmp_path, monkeypatch):
    """No config cache, no HF cache, the Hub unreachable: nothing is fetched (the CLIP tokenizer is bundled), and a
    file whose sizes do not fit the real SD1 / SDXL architecture (these tiny ones) says so, in CLI words."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked for a file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    CACHE.release()
    for model in ("tiny-sd1", "tiny-sdxl"):
        with pytest.raises(GenerationError) as err:
            run(model=model, prompt="a cat")
        message = str(err.value)
        assert "\n" not in message and "do not fit the bundled config" in message and "--config" in message
        assert "incomplete" not in message and "[49408, 768]" in message
    assert (tmp_path / "empty-cache" / "sdxl" / "tokenizer_2" / "vocab.json").is_file()


def test_refuses_families_it_cannot_run(library, tmp_path):
    from safetensors.torch import save_file

    # Flux, Z-Image, SD3… generate now (tests/test_families*.py); a family outside the registry is refused
    hunyuan = tmp_path / "hunyuan-dit.safetensors"
    save_file({"mlp_t5.0.weight": torch.zeros(8, 4), "blocks.0.attn1.Wqkv.weight": torch.zeros(12, 4)}, str(hunyuan))
    with pytest.raises(InputError, match="Hunyuan-DiT.*SD1.x, SD2.x, SDXL"):
        run(model=str(hunyuan), prompt="a cat")
    with pytest.raises(InputError, match="not a checkpoint"):
        run(model=str(library / "lora" / "tiny-kohya.safetensors"), prompt="a cat")


# ---------------------------------------------------------------------------------------------- cache


def test_same_model_is_not_reloaded_and_lora_changes_do_not_reload():
    run(model="tiny-sd1", prompt="a cat")
    before = load_count()
    first = run(model="tiny-sd1", prompt="a dog")
    with_lora = run(model="tiny-sd1", prompt="a dog <lora:tiny-kohya:0.7>")
    other_weight = run(model="tiny-sd1", prompt="a dog", loras=["tiny-kohya:0.3", "tiny-peft:0.5"])
    again = run(model="tiny-sd1", prompt="a dog")
    assert load_count() == before
    assert not any(r.loaded for r in (first, with_lora, other_weight, again))
    assert np.array_equal(pixels(first), pixels(again))  # LoRAs disabled again: the base output exactly


def test_changing_model_frees_the_old_one():
    run(model="tiny-sd1", prompt="a cat")
    old_unet = weakref.ref(CACHE.entry.pipe.unet)
    before = load_count()
    result = run(model="tiny-sdxl", prompt="a cat")
    assert result.loaded and load_count() == before + 1
    import gc

    gc.collect()
    assert old_unet() is None, "the previous model is still referenced"


# ---------------------------------------------------------------------------------------------- add-ons


def test_lora_changes_the_output_and_its_weight_matters():
    base = run(model="tiny-sd1", prompt="a cat")
    half = run(model="tiny-sd1", prompt="a cat <lora:tiny-kohya:0.5>")
    full = run(model="tiny-sd1", prompt="a cat <lora:tiny-kohya:1>")
    as_option = run(model="tiny-sd1", prompt="a cat", loras=[("tiny-kohya", 0.5)])
    assert differs(base, half) > 0.5 and differs(half, full) > 0.5
    assert np.array_equal(pixels(half), pixels(as_option))
    fields = parse_parameters(read_png_parameters(half.paths[0]))
    assert fields["prompt"] == "a cat <lora:tiny-kohya:0.5>"
    assert list(parse_hash_list(fields["Lora hashes"])) == ["tiny-kohya"]
    assert parse_parameters(as_option.parameters[0])["prompt"] == "a cat <lora:tiny-kohya:0.5>"


def test_lycoris_locon_applies_to_the_resnet_convolutions():
    base = run(model="tiny-sd1", prompt="a cat")
    locon = run(model="tiny-sd1", prompt="a cat <lora:tiny-locon:1>")
    assert differs(base, locon) > 0.5
    conv = CACHE.entry.pipe.unet.down_blocks[0].resnets[0].conv1
    assert "tiny_locon" in conv.lora_A  # the 3x3 convolutions carry the adapter, not only attention


def test_peft_lora_on_sd1_and_sdxl():
    for model, lora in (("tiny-sd1", "tiny-peft"), ("tiny-sdxl", "tiny-sdxl-peft")):
        base = run(model=model, prompt="a cat")
        styled = run(model=model, prompt=f"a cat <lora:{lora}:1>")
        assert differs(base, styled) > 0.5, model


def test_lora_for_another_family_is_refused_and_leaves_the_model_usable():
    base = run(model="tiny-sdxl", prompt="a cat")
    with pytest.raises(InputError, match="tiny-kohya is for SD1.x.*SDXL"):
        run(model="tiny-sdxl", prompt="a cat <lora:tiny-kohya:1>")
    assert np.array_equal(pixels(base), pixels(run(model="tiny-sdxl", prompt="a cat")))


def _lora_file(path, tensors: dict, metadata: Optional[dict] = None):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata or {"format": "pt"})
    return path


@pytest.mark.parametrize("kind,family", [("flux-ai-toolkit", "Flux"), ("flux-kohya", "Flux"), ("sd3", "SD3")])
def test_a_lora_of_another_family_is_refused_before_loading_naming_both(tmp_path, kind, family):
    """The probe says "Flux LoRA" / "SD3 LoRA": refused before any model loads, never a raw adapter error."""
    z = torch.zeros
    tensors = {
        "flux-ai-toolkit": {"transformer.transformer_blocks.0.attn.to_k.lora_A.weight": z(4, 3072),
                            "transformer.transformer_blocks.0.attn.to_k.lora_B.weight": z(3072, 4)},
        "flux-kohya": {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": z(4, 3072),
                       "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": z(9216, 4),
                       "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(4.0)},
        "sd3": {"transformer.transformer_blocks.0.attn.add_k_proj.lora_A.weight": z(4, 1536),
                "transformer.transformer_blocks.0.attn.add_k_proj.lora_B.weight": z(1536, 4)},
    }[kind]
    lora = _lora_file(tmp_path / f"other-{kind}.safetensors", tensors)
    CACHE.release()
    loads = load_count()
    for model, label in (("tiny-sd1", "SD1.x"), ("tiny-sdxl", "SDXL")):
        with pytest.raises(InputError) as err:
            run(model=model, prompt="a cat", loras=[(str(lora), 0.8)])
        assert f"is for {family} but {model} is {label}" in str(err.value) and "\n" not in str(err.value)
    assert load_count() == loads


def test_a_kohya_dora_is_refused_rather_than_applied_without_its_dora_part(library, tmp_path):
    """diffusers drops `.dora_scale` with a log warning: the image would equal the plain LoRA's. Refused instead."""
    from safetensors import safe_open

    plain = library / "lora" / "tiny-kohya.safetensors"
    with safe_open(str(plain), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    for key in [k for k in tensors if k.endswith(".lora_up.weight")]:
        tensors[key.replace(".lora_up.weight", ".dora_scale")] = torch.ones(tensors[key].shape[0], 1)
    dora = _lora_file(tmp_path / "tiny-dora.safetensors", tensors,
                      {"ss_network_module": "lycoris.kohya", "ss_network_args": '{"algo": "lora", "dora_wd": "True"}'})
    loads = load_count()
    with pytest.raises(InputError, match="tiny-dora is a LyCORIS DoRA .* use a plain LoRA version"):
        run(model="tiny-sd1", prompt="a cat", loras=[(str(dora), 1.0)])
    assert load_count() == loads


def test_a_lora_that_matches_no_layer_never_reaches_set_adapters(tmp_path):
    z = torch.zeros
    nomatch = _lora_file(tmp_path / "tiny-nomatch.safetensors",
                         {"lora_unet_no_such_block_attn1_to_q.lora_down.weight": z(4, 8),
                          "lora_unet_no_such_block_attn1_to_q.lora_up.weight": z(8, 4),
                          "lora_unet_no_such_block_attn1_to_q.alpha": torch.tensor(4.0)},
                         {"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v1"})
    base = run(model="tiny-sd1", prompt="a cat")
    with pytest.raises(InputError) as err:
        run(model="tiny-sd1", prompt="a cat", loras=[(str(nomatch), 1.0)])
    assert "tiny-nomatch" in str(err.value) and "\n" not in str(err.value)
    assert np.array_equal(pixels(base), pixels(run(model="tiny-sd1", prompt="a cat")))


def test_embedding_by_file_name_in_the_prompt():
    collect = Collect()
    plain = run(model="tiny-sd1", prompt="a cat")
    embedded = run(model="tiny-sd1", prompt="a cat tiny-emb", on_event=collect)
    assert differs(plain, embedded) > 0.5
    assert "tiny-emb" in CACHE.entry.pipe.tokenizer.get_vocab()
    assert "tiny-emb" in parse_hash_list(parse_parameters(embedded.parameters[0])["TI hashes"])
    # an SDXL embedding (clip_l + clip_g) in an SDXL prompt; the SD1 one is skipped there with a note
    notes = Collect()
    xl_plain = run(model="tiny-sdxl", prompt="a cat")
    xl = run(model="tiny-sdxl", prompt="a cat tiny-sdxl-emb tiny-emb", on_event=notes)
    assert differs(xl_plain, xl) > 0.5
    assert "tiny-sdxl-emb" in CACHE.entry.pipe.tokenizer_2.get_vocab()
    assert any("tiny-emb is for SD1.x" in e.message for e in notes.of(Info))


def test_a1111_pt_embedding():
    plain = run(model="tiny-sd1", prompt="a cat, blurry")
    embedded = run(model="tiny-sd1", prompt="a cat, blurry", negative_prompt="tiny-a1111-emb")
    assert differs(plain, embedded) > 0.5
    assert "tiny-a1111-emb" in parse_hash_list(parse_parameters(embedded.parameters[0])["TI hashes"])


def test_a_pickle_that_runs_code_is_not_loaded(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    state = {"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "x": Payload()}
    with open(path, "wb") as fh:
        pickle.dump(state, fh, protocol=2)
    with pytest.raises(InputError, match="would run code when loaded.*get a .safetensors version"):
        run(model=str(path), prompt="a cat")


def test_vae_override_applies_with_the_family_config():
    base = run(model="tiny-sd1", prompt="a cat")
    swapped = run(model="tiny-sd1", prompt="a cat", vae="tiny-vae")
    assert differs(base, swapped) > 0.5
    assert CACHE.entry.pipe.vae.config.scaling_factor == pytest.approx(0.18215)
    fields = parse_parameters(swapped.parameters[0])
    assert fields["VAE"] == "tiny-vae.safetensors" and len(fields["VAE hash"]) == 10
    back = run(model="tiny-sd1", prompt="a cat")
    assert np.array_equal(pixels(base), pixels(back))
    run(model="tiny-sdxl", prompt="a cat", vae="tiny-sdxl-vae")
    assert CACHE.entry.pipe.vae.config.scaling_factor == pytest.approx(0.13025)


def test_trigger_words_come_from_the_lora_sidecar(library):
    write_sidecar(library / "lora" / "tiny-peft.safetensors", {"trigger_words": ["tinystyle", "pixel art"]})
    assert trigger_words("tiny-peft") == ["tinystyle", "pixel art"]
    assert trigger_words("tiny-kohya") == []


# ---------------------------------------------------------------------------------------------- samplers


def _sampler_cases():
    return [(s, sch) for s in SAMPLERS for sch in schedules_for(s)]


@pytest.mark.parametrize("sampler,schedule", _sampler_cases())
def test_every_listed_sampler_and_schedule_runs(sampler, schedule):
    result = run(model="tiny-sd1", prompt="a cat", sampler=sampler, schedule=schedule, steps=3)
    arr = pixels(result)
    assert arr.shape == (64, 64, 3) and arr.std() > 0
    fields = parse_parameters(result.parameters[0])
    assert fields["Sampler"] == sampler
    if schedule != "Automatic":
        assert fields["Schedule type"] == schedule


def test_sampler_lists_for_the_ui():
    assert SAMPLERS[:2] == ["DPM++ 2M", "DPM++ 2M SDE"] and "Euler a" in SAMPLERS and "LCM" in SAMPLERS
    assert SCHEDULES == ["Automatic", "Karras", "Exponential"]
    assert schedules_for("Euler a") == ["Automatic"] and "Karras" in schedules_for("DPM++ 2M")


# ---------------------------------------------------------------------------------------------- determinism, seeds


def test_same_request_same_pixels_and_seed_matters():
    a = run(model="tiny-sdxl", prompt="a cat", sampler="Euler a")
    b = run(model="tiny-sdxl", prompt="a cat", sampler="Euler a")
    c = run(model="tiny-sdxl", prompt="a cat", sampler="Euler a", seed=99)
    assert np.array_equal(pixels(a), pixels(b))
    assert differs(a, c) > 0.5


def test_output_does_not_depend_on_the_sampler_used_before():
    first = run(model="tiny-sd1", prompt="a cat", sampler="DPM++ 2M")
    for other in ("DPM++ SDE", "LCM", "DPM++ 2M SDE", "Euler a"):
        run(model="tiny-sd1", prompt="a cat", sampler=other, schedule="Automatic")
    assert np.array_equal(pixels(first), pixels(run(model="tiny-sd1", prompt="a cat", sampler="DPM++ 2M")))


def test_random_seed_is_resolved_and_reported():
    collect = Collect()
    result = run(model="tiny-sd1", prompt="a cat", seed=-1, on_event=collect)
    assert 0 <= result.seed < 2**32 and result.request.seed == result.seed
    assert any(e.message == f"seed {result.seed}" for e in collect.of(Info))
    assert parse_parameters(result.parameters[0])["Seed"] == str(result.seed)
    assert str(result.seed) in result.paths[0].name
    again = run(model="tiny-sd1", prompt="a cat", seed=result.seed)
    assert np.array_equal(pixels(result), pixels(again))


def test_batches_get_consecutive_seeds_and_time_sorted_names():
    result = run(model="tiny-sd1", prompt="a cat", batch_size=2, batch_count=2, seed=500)
    assert result.seeds == [500, 501, 502, 503] and len(result.paths) == 4
    assert [p.name for p in result.paths] == sorted(p.name for p in result.paths)
    for path, seed in zip(result.paths, result.seeds):
        assert path.stem.split("-")[3] == str(seed)
        assert parse_parameters(read_png_parameters(path))["Seed"] == str(seed)
    # any image of a batch comes back alone from its own seed (one generator per image); batched matmuls may
    # round differently, so "the same" here is within a level or two of 255
    alone = run(model="tiny-sd1", prompt="a cat", seed=503)
    gap = np.abs(pixels(result, 3) - pixels(alone))
    assert gap.max() <= 2 and gap.mean() < 0.05, (gap.max(), gap.mean())
    assert differs(alone, run(model="tiny-sd1", prompt="a cat", seed=502)) > 0.5


# ---------------------------------------------------------------------------------------------- img2img


def test_img2img_uses_the_init_image_and_strength(tmp_path):
    from PIL import Image

    init_path = tmp_path / "init.png"
    gradient = np.linspace(0, 255, 96 * 80 * 3).reshape(80, 96, 3).astype(np.uint8)
    Image.fromarray(gradient).save(init_path)
    light = run(model="tiny-sd1", prompt="a cat", init_image=str(init_path), strength=0.3, width=None, height=None,
                steps=4)
    heavy = run(model="tiny-sd1", prompt="a cat", init_image=str(init_path), strength=0.9, width=None, height=None,
                steps=4)
    assert light.images[0].size == (96, 80)
    init = np.asarray(Image.open(init_path), dtype=np.int16)
    assert np.abs(pixels(light) - init).mean() < np.abs(pixels(heavy) - init).mean()
    assert parse_parameters(light.parameters[0])["Denoising strength"] == "0.3"
    xl = run(model="tiny-sdxl", prompt="a cat", init_image=Image.open(init_path), strength=0.5, width=64, height=64)
    assert xl.images[0].size == (64, 64) and xl.family == "sdxl"


# ---------------------------------------------------------------------------------------------- events, metadata


def test_step_events_previews_and_completed_files():
    collect = Collect()
    result = run(model="tiny-sd1", prompt="a cat", steps=3, preview_every=1, on_event=collect)
    steps = collect.of(StepProgress)
    assert [e.step for e in steps] == [1, 2, 3] and all(e.total == 3 for e in steps)
    assert all(e.rate > 0 and e.eta >= 0 for e in steps) and steps[-1].eta == 0
    assert steps[0].preview is not None and steps[0].preview.size == (8, 8)
    assert json.loads(steps[0].to_json())["status"] == "progress"
    done = collect.of(Completed)
    assert [Path(e.path) for e in done] == result.paths and done[0].bytes == result.paths[0].stat().st_size


def test_metadata_round_trip_with_sidecar_and_computed_hashes(library):
    import hashlib

    model = library / "checkpoint" / "tiny-sd1.safetensors"
    real = hashlib.sha256(model.read_bytes()).hexdigest()
    write_sidecar(model, {"sha256": real, "trigger_words": []})
    result = run(model="tiny-sd1", prompt='a "quoted", cat: yes', negative_prompt="blurry, ugly", cfg=6.5,
                 sampler="DPM++ 2M", schedule="Karras", clip_skip=2)
    fields = parse_parameters(read_png_parameters(result.paths[0]))
    assert fields["prompt"] == 'a "quoted", cat: yes' and fields["negative_prompt"] == "blurry, ugly"
    assert fields["Steps"] == "2" and fields["Sampler"] == "DPM++ 2M" and fields["Schedule type"] == "Karras"
    assert fields["CFG scale"] == "6.5" and fields["Seed"] == "1234" and fields["Size"] == "64x64"
    assert fields["Model hash"] == real[:10] and fields["Model"] == "tiny-sd1" and fields["Clip skip"] == "2"
    assert fields["Version"].startswith("colab_sd ")
    # a model without a recorded sha256: computed once and written back to its sidecar
    folder_copy = library / "checkpoint" / "tiny-sd1-copy.safetensors"
    if not folder_copy.exists():
        os.link(model, folder_copy)
    copy_result = run(model="tiny-sd1-copy", prompt="a cat")
    assert parse_parameters(copy_result.parameters[0])["Model hash"] == real[:10]
    assert json.loads((library / "checkpoint" / "tiny-sd1-copy.safetensors.json").read_text())["sha256"] == real


def test_long_weighted_and_break_prompts_are_read_as_a1111_reads_them():
    """Words past token 75 count, `(x:1.0)` is `x`, BREAK starts a chunk: no notes about any of it."""
    head = ", ".join(["a red cat"] * 26)  # 103 tokens: "a red cat" is 3 tokens and every comma one more
    collect = Collect()
    long_a = run(model="tiny-sd1", prompt=head + ", blue house", on_event=collect)
    long_b = run(model="tiny-sd1", prompt=head + ", green tree")
    assert differs(long_a, long_b) > 0.5
    assert not any("tokens" in e.message or "emphasis" in e.message for e in collect.of(Info))
    assert np.array_equal(pixels(run(model="tiny-sd1", prompt="a (cat:1.0)")), pixels(run(model="tiny-sd1", prompt="a cat")))
    assert differs(run(model="tiny-sd1", prompt="a (cat:2.0)"), run(model="tiny-sd1", prompt="a cat")) > 0
    assert differs(run(model="tiny-sd1", prompt="a BREAK b"), run(model="tiny-sd1", prompt="a b")) > 0.5
    assert differs(run(model="tiny-sdxl", prompt="a BREAK b"), run(model="tiny-sdxl", prompt="a b")) > 0.5


def test_clip_skip_changes_the_output_and_works_with_loras():
    a = run(model="tiny-sd1", prompt="a cat")
    b = run(model="tiny-sd1", prompt="a cat", clip_skip=2)
    c = run(model="tiny-sd1", prompt="a cat <lora:tiny-peft:1>", clip_skip=2)
    assert differs(a, b) > 0.5 and differs(b, c) > 0.5
    assert "text_model" not in CACHE.entry.pipe.text_encoder.__dict__  # the compatibility alias is call-scoped
    # SDXL: A1111 always uses the penultimate layer, so 1 and 2 are the same; Forge's deeper skips go further.
    xl, xl_skip = run(model="tiny-sdxl", prompt="a cat"), run(model="tiny-sdxl", prompt="a cat", clip_skip=2)
    assert np.array_equal(pixels(xl), pixels(xl_skip))
    assert differs(xl, run(model="tiny-sdxl", prompt="a cat", clip_skip=3)) > 0.5


# ---------------------------------------------------------------------------------------------- failures


def test_out_of_memory_is_reported_with_what_to_try_and_the_model_stays_usable():
    base = run(model="tiny-sd1", prompt="a cat")
    loads = load_count()
    unet = CACHE.entry.pipe.unet

    def oom(module, args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = unet.register_forward_pre_hook(oom)
    try:
        with pytest.raises(GenerationError) as err:
            run(model="tiny-sd1", prompt="a cat", batch_size=4)
    finally:
        hook.remove()
    message = str(err.value)
    assert "\n" not in message and "out of memory" in message and "smaller size" in message and "low_vram" in message
    assert np.array_equal(pixels(base), pixels(run(model="tiny-sd1", prompt="a cat")))
    assert load_count() == loads


def test_cancel_stops_after_the_current_step():
    cancel = threading.Event()
    collect = Collect()

    def listener(event):
        collect(event)
        if isinstance(event, StepProgress) and event.step == 1:
            cancel.set()

    result = run(model="tiny-sd1", prompt="a cat", steps=5, batch_count=3, on_event=listener, cancel=cancel)
    assert result.cancelled and result.paths == []
    assert len(collect.of(StepProgress)) == 1


@pytest.mark.parametrize("fields,pattern", [
    (dict(width=500), r"width 500 is not a multiple of 8: use 496 or 504"),
    (dict(height=30), r"height 30 is not a multiple of 8"),
    (dict(sampler="Euler b"), r"unknown sampler 'Euler b': use one of DPM\+\+ 2M, .*Euler a.*LCM"),
    (dict(schedule="Weird"), r"unknown schedule type 'Weird'"),
    (dict(sampler="Euler a", schedule="Karras"), r"Euler a cannot follow the Karras schedule"),
    (dict(steps=0), r"steps must be between 1 and"),
    (dict(cfg=-1), r"CFG scale must be between 0 and 50"),
    (dict(seed=-5), r"seed must be between -1 and"),
    (dict(batch_size=0), r"batch size must be between 1 and 64"),
    (dict(clip_skip=13), r"clip skip must be between 1 and 12"),
    (dict(strength=1.5), r"strength must be between 0 and 1"),
    (dict(prompt="a <lora:tiny-kohya:lots>"), r"LoRA weight .* is not a number"),
    (dict(prompt="a <hypernet:x:1>"), r"hypernetworks are not supported"),
    (dict(prompt="a (cat:1.5.5)"), r"emphasis weight ':1.5.5\)' is not a number"),
    (dict(negative_prompt="(ugly:..)"), r"emphasis weight .* is not a number"),
    (dict(prompt="a cat AND a dog"), r"AND in a prompt is A1111's composable diffusion"),
    (dict(loras=["nope:0.5"]), r"lora 'nope' not found in .*lora \(available: tiny-kohya, tiny-locon, tiny-peft"),
    (dict(vae="nope"), r"vae 'nope' not found"),
    (dict(model=""), r"no model chosen"),
    (dict(init_image="/no/such/image.png"), r"init image not found"),
    (dict(dtype="fp8"), r"unknown dtype 'fp8'"),
    (dict(flavour="spicy"), r"unknown generation option 'flavour'"),
])
def test_validation_errors_are_one_clear_line(fields, pattern):
    loads = load_count()
    with pytest.raises((InputError, NotFoundError)) as err:
        colab_sd.generate(**{**SMALL, "model": "tiny-sd1", "prompt": "a cat", **fields})
    assert "\n" not in str(err.value)
    import re

    assert re.search(pattern, str(err.value)), str(err.value)
    assert load_count() == loads  # refused before loading anything


def test_missing_model_lists_the_ones_that_exist():
    with pytest.raises(NotFoundError) as err:
        colab_sd.generate(model="dreamshaper_8", prompt="a cat")
    assert "dreamshaper_8" in str(err.value) and "tiny-sd1.safetensors" in str(err.value)
    assert "tiny-sdxl-diffusers" in str(err.value)


def test_request_object_and_fields_both_work():
    request = GenerationRequest(model="tiny-sd1", prompt="a cat", **SMALL)
    a = colab_sd.generate(request)
    b = colab_sd.generate(request, prompt="a dog")
    c = colab_sd.generate(model="tiny-sd1", prompt="a cat", **SMALL)
    assert np.array_equal(pixels(a), pixels(c)) and differs(a, b) > 0
    assert a.request.model == "tiny-sd1" and b.request.prompt == "a dog"


def test_dtype_argument_name_follows_the_diffusers_version():
    from colab_sd.generation.loader import dtype_kwarg

    assert dtype_kwarg("0.39.0") == "torch_dtype"
    assert dtype_kwarg("0.40.0.dev0") == "dtype"
    assert dtype_kwarg("0.42.1") == "dtype"


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_generate_prints_paths(library, tmp_path, capsys):
    from colab_sd.cli import main

    out = tmp_path / "cli-out"
    code = main(["generate", "--model", "tiny-sd1", "--prompt", "a cat", "--steps", "2", "--width", "64",
                 "--height", "64", "--seed", "7", "--lora", "tiny-kohya:0.5", "--sampler", "Euler a",
                 "--dir", str(library), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    paths = [Path(line) for line in captured.out.split()]
    assert len(paths) == 1 and paths[0].is_file() and paths[0].is_relative_to(out)
    fields = parse_parameters(read_png_parameters(paths[0]))
    assert fields["Seed"] == "7" and fields["Sampler"] == "Euler a" and "tiny-kohya" in fields["Lora hashes"]


def test_cli_generate_json_events(library, tmp_path, capsys):
    from colab_sd.cli import main

    code = main(["generate", "-m", "tiny-sd1", "-p", "a cat", "--steps", "2", "--width", "64", "--height", "64",
                 "--dir", str(library), "--out", str(tmp_path), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [e["step"] for e in lines if e["status"] == "progress"] == [1, 2]
    completed = [e for e in lines if e["status"] == "completed"]
    assert len(completed) == 1 and Path(completed[0]["path"]).is_file()


def test_cli_generate_bad_input_is_one_line(library, capsys):
    from colab_sd.cli import main

    code = main(["generate", "-m", "tiny-sd1", "-p", "a cat", "--width", "65", "--dir", str(library)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("colab-sd: error: width 65 is not a multiple of 8")
    assert err.count("\n") == 1


def test_importing_the_cli_and_listing_samplers_does_not_import_torch():
    code = ("import sys, colab_sd.cli.generate, colab_sd.generation as g; "
            "assert g.SAMPLERS; g.GenerationRequest(model='x', prompt='y').validate(); "
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------------------------------------- Hugging Face repos


@pytest.fixture
def online_hub(library, monkeypatch, tmp_path):
    """The fake Hub on 127.0.0.1 serving the tiny SD1 diffusers folder as alice/tiny-sd1 (and a gated copy)."""
    import huggingface_hub.constants as hf_constants
    from fakes.hf_hub import FakeHub

    folder = library / "checkpoint" / "tiny-sd1-diffusers"
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with FakeHub() as hub:
        hub.add_repo("alice/tiny-sd1", files)
        hub.add_repo("alice/gated-sd1", files, gated=True)
        hub.add_repo("alice/private-sd1", files, private=True)
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield hub


def test_model_from_a_hugging_face_repo_id(online_hub):
    result = run(model="alice/tiny-sd1", prompt="a cat")
    assert result.family == "sd1" and result.model == "alice/tiny-sd1"
    assert parse_parameters(result.parameters[0])["Model"] == "alice/tiny-sd1"
    fetched = {h["path"] for h in online_hub.hits("/alice/tiny-sd1/resolve/")}
    assert any(p.endswith("unet/diffusion_pytorch_model.safetensors") for p in fetched)
    before = load_count()
    run(model="alice/tiny-sd1", prompt="a dog")
    assert load_count() == before  # the cached snapshot is the same model: no reload


def test_gated_and_missing_repos_say_what_to_do(online_hub):
    with pytest.raises(NotFoundError, match="gated: accept its licence"):
        run(model="alice/gated-sd1", prompt="a cat")
    with pytest.raises(NotFoundError, match="not a Hugging Face repo you can see"):
        run(model="alice/nothing-here", prompt="a cat")


def test_private_repo_uses_the_token_given_with_the_request(online_hub):
    """The app's Tokens panel hands its TokenStore to generate(); the environment has no HF token here."""
    from colab_sd.tokens import TokenStore
    from fakes.hf_hub import TOKEN

    with pytest.raises(NotFoundError):
        run(model="alice/private-sd1", prompt="a cat", tokens=TokenStore(use_colab=False))
    result = run(model="alice/private-sd1", prompt="a cat", tokens=TokenStore(huggingface=TOKEN, use_colab=False))
    assert result.family == "sd1"
    assert TOKEN not in repr(result.request) and TOKEN not in json.dumps(result.request.to_dict(), default=str)


def test_hub_file_choice_is_the_sources_one_set_of_safetensors_per_component():
    """Generation fetches Hub repos through sources.huggingface (issue 13 B2): one set of weights per component,
    fp16 where that component has it, full precision where it has not (the VAE is never dropped)."""
    from colab_sd.sources.huggingface import pipeline_files

    names = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
             "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
             "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "tokenizer/vocab.json",
             "tokenizer/merges.txt", "v1-5-pruned.ckpt", "README.md", "unet/flax/x.msgpack"]
    chosen = pipeline_files(names)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in chosen
    assert "vae/diffusion_pytorch_model.safetensors" in chosen
    assert not any(n.endswith((".bin", ".ckpt", ".msgpack", ".md")) for n in chosen)


def test_lycoris_loha_is_refused_with_a_clear_message(library):
    from safetensors.torch import save_file

    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    path = library / "lora" / "tiny-loha.safetensors"
    save_file({f"{base}.hada_w1_a": torch.zeros(8, 4), f"{base}.hada_w1_b": torch.zeros(4, 8),
               f"{base}.hada_w2_a": torch.zeros(8, 4), f"{base}.hada_w2_b": torch.zeros(4, 8),
               f"{base}.alpha": torch.tensor(4.0)}, str(path))
    try:
        with pytest.raises(InputError, match="LyCORIS LOHA, which diffusers cannot apply"):
            run(model="tiny-sd1", prompt="a cat <lora:tiny-loha:1>")
    finally:
        path.unlink()


def test_low_vram_on_cpu_tiles_the_vae_and_gives_the_same_picture_size():
    result = run(model="tiny-sd1", prompt="a cat", low_vram=True)
    assert CACHE.entry.pipe.vae.use_tiling and not CACHE.entry.offloaded  # offload needs CUDA; tiling does not
    assert result.images[0].size == (64, 64)
    run(model="tiny-sd1", prompt="a cat")
    assert not CACHE.entry.pipe.vae.use_tiling


def test_a_unet_only_checkpoint_fails_to_load_in_one_line(library, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(library / "checkpoint" / "tiny-sd1.safetensors"))
    path = tmp_path / "unet-only.safetensors"
    save_file({k: v for k, v in state.items() if k.startswith("model.diffusion_model.")}, str(path))
    with pytest.raises(GenerationError) as err:
        run(model=str(path), prompt="a cat")
    assert "could not load unet-only as an SD1.x model: the file has no CLIPTextModel weights" in str(err.value)
    assert "\n" not in str(err.value)
    run(model="tiny-sd1", prompt="a cat")  # the next model loads normally
