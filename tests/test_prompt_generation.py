"""A1111 prompts through the whole generation path on tiny models (CPU, offline): schedules switching during
sampling, the CLI with weighted / long / BREAK prompts, and the details a new user tripped over (issue 9)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402

import colab_sd  # noqa: E402
import tiny_models  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.events import Collect, Info  # noqa: E402
from colab_sd.generation import load_count, parse_parameters, read_png_parameters  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.usefixtures("offline")]
SMALL = dict(steps=4, width=64, height=64, seed=99, sampler="Euler")


def run(**fields):
    return colab_sd.generate(**{**SMALL, "model": "tiny-sd1", **fields})


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("model", ["tiny-sd1", "tiny-sdxl"])
def test_prompt_editing_switches_the_conditioning_during_sampling(model):
    cat, dog = run(model=model, prompt="a cat"), run(model=model, prompt="a dog")
    edited = run(model=model, prompt="a [cat:dog:2]")  # calls 0-2 "a cat", call 3 "a dog"
    assert not same(edited, cat) and not same(edited, dog)
    assert same(run(model=model, prompt="a [cat:dog:1.0]"), cat)  # a fraction of 1.0 never switches
    assert same(run(model=model, prompt="a [cat:dog:9]"), cat)  # past the last step: capped, never switches
    assert not same(run(model=model, prompt="a [cat|dog]"), cat)
    parameters = parse_parameters(edited.parameters[0])
    assert edited.parameters[0].startswith("a [cat:dog:2]\n") and parameters["Steps"] == "4"


def test_negative_prompt_editing_switches_too():
    plain = run(prompt="a cat", negative_prompt="blurry")
    assert not same(run(prompt="a cat", negative_prompt="[blurry:ugly:1]"), plain)


def test_a_trailing_weight_scales_the_guidance_as_composable_diffusion_does():
    assert same(run(prompt="a cat :0.5", cfg=7.0), run(prompt="a cat", cfg=3.5))
    assert same(run(prompt="a cat:1"), run(prompt="a cat"))  # the `:1` is a weight, not text, as in A1111


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("prompt", [
    "a (red:1.3) [blue] ((cat)), \\(literal\\)",
    ", ".join(["a red cat"] * 30),  # 119 tokens: two chunks
    "a red cat BREAK a blue house",
    "a [cat:dog:0.5] [red|blue] house",
])
def test_cli_generate_with_weighted_long_break_and_edited_prompts(library, tmp_path, capsys, prompt):
    from colab_sd.cli import main

    out = tmp_path / "cli-out"
    code = main(["generate", "-m", "tiny-sdxl", "-p", prompt, "-n", "(blurry:1.2)", "--steps", "2", "--width", "64",
                 "--height", "64", "--seed", "5", "--dir", str(library), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    paths = [Path(line) for line in captured.out.split()]
    assert len(paths) == 1 and paths[0].is_file()
    text = read_png_parameters(paths[0])
    assert text.startswith(prompt + "\nNegative prompt: (blurry:1.2)\n")
    assert "tokens" not in captured.err and "emphasis" not in captured.err


def test_cli_clip_skip_is_written_as_a1111_writes_it(library, tmp_path, capsys):
    from colab_sd.cli import main

    code = main(["generate", "-m", "tiny-sd1", "-p", "a cat", "--steps", "2", "--width", "64", "--height", "64",
                 "--clip-skip", "2", "--dir", str(library), "--out", str(tmp_path)])
    assert code == 0
    path = Path(capsys.readouterr().out.split()[0])
    assert parse_parameters(read_png_parameters(path))["Clip skip"] == "2"


def test_cli_out_that_is_a_file_is_refused_before_loading(library, tmp_path, capsys):
    from colab_sd.cli import main

    target = tmp_path / "picture.png"
    target.write_bytes(b"not a folder")
    loads = load_count()
    code = main(["generate", "-m", "tiny-sd1", "-p", "a cat", "--steps", "2", "--width", "64", "--height", "64",
                 "--dir", str(library), "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 1 and "--out" in err and "is a file: give a folder" in err and err.count("\n") == 1
    assert load_count() == loads and target.read_bytes() == b"not a folder"
    with pytest.raises(InputError, match="is a file, not a folder"):
        run(prompt="a cat", outputs_dir=str(target / "inside"))


def test_cli_device_cuda_without_a_gpu_answers_in_cli_words(library, capsys, monkeypatch):
    import torch

    from colab_sd.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, wherever this runs
    code = main(["generate", "-m", "tiny-sd1", "-p", "a cat", "--device", "cuda", "--dir", str(library)])
    err = capsys.readouterr().err
    assert code == 1 and "--device cpu" in err and "device=" not in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- folders, notices


def test_a_stable_diffusion_pipeline_folder_of_any_width_loads_as_sd1(tmp_path):
    """Judged by its pipeline class: a test-size StableDiffusionPipeline (32-wide text encoder) is not refused."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=8,
                                in_channels=4, out_channels=4, cross_attention_dim=32, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    base = tiny_models.build_sd1()
    pipe = StableDiffusionPipeline(unet=unet, vae=base.vae, text_encoder=CLIPTextModel(tiny_models._text_config(32)),
                                   tokenizer=base.tokenizer, scheduler=base.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    folder = tiny_models.save_diffusers(pipe, tmp_path / "tiny-sd-32")
    result = run(model=str(folder), prompt="a (cat:1.2) BREAK a dog")
    assert result.family == "sd1" and result.images[0].size == (64, 64)


def test_no_torchvision_notice_on_a_machine_without_torchvision():
    """transformers prints two "requires torchvision" notices at `import diffusers` when torchvision is missing;
    generation filters them. Run with torchvision made unimportable, as on a user's machine without it."""
    code = r"""
import importlib.abc, importlib.util, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torchvision":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] == "torchvision" else real(name, *a, **k)
from colab_sd.generation.loader import hush_torchvision_notice
hush_torchvision_notice()
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "requires torchvision" not in done.stderr


def test_no_notes_about_tokens_or_emphasis_any_more():
    collect = Collect()
    run(prompt=", ".join(["a red cat"] * 40) + " (blue:1.3)", on_event=collect)
    assert not [e.message for e in collect.of(Info) if "token" in e.message or "emphasis" in e.message]


def test_and_in_a_negative_prompt_stays_text():
    """A1111 splits only positive prompts on AND; in a negative it is a word, so nothing is refused there."""
    assert run(prompt="a cat", negative_prompt="blurry AND ugly").images[0].size == (64, 64)
    with pytest.raises(InputError, match="composable diffusion"):
        run(prompt="a cat AND a dog")
