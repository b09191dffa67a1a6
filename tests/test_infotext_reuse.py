"""Reusing an image's settings: library matching by hash then name, `generate --from`, and the round trip
(an image colab_sd made, read back and generated again, is pixel-identical on the CPU with the tiny models)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from colab_sd.cli import main  # noqa: E402
from colab_sd.generation import metadata  # noqa: E402
from colab_sd.generation.reuse import request_from_parameters  # noqa: E402
from colab_sd.infotext import from_civitai_meta, from_text, read_parameters  # noqa: E402
from colab_sd.library import read_sidecar  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"), pytest.mark.usefixtures("offline")]


def cli(*args, capsys) -> tuple[int, list[Path], str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, [Path(line) for line in captured.out.split()], captured.err


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# ---------------------------------------------------------------------------------------------- round trip


def test_round_trip_generate_from_is_pixel_identical(library, tmp_path, capsys):
    code, first, _ = cli("generate", "-m", "tiny-sd1", "-p", "a red cat, (garden:1.2) <lora:tiny-kohya:0.6>",
                         "-n", "blurry", "--steps", "2", "--width", "64", "--height", "64", "--seed", "4242",
                         "--sampler", "Euler a", "--cfg", "6.5", "--clip-skip", "2", "--vae", "tiny-vae",
                         "--dir", str(library), "--out", str(tmp_path / "a"), capsys=capsys)
    assert code == 0 and len(first) == 1
    written = read_parameters(first[0])
    assert (written["source"], written["seed"], written["clip_skip"], written["sampler"]) == \
        ("colab_sd", 4242, 2, "Euler a")
    code, second, err = cli("generate", "--from", str(first[0]), "--dir", str(library), "--out", str(tmp_path / "b"),
                            capsys=capsys)
    assert code == 0 and len(second) == 1, err
    assert np.array_equal(pixels(first[0]), pixels(second[0]))
    again = read_parameters(second[0])
    assert again["text"] == written["text"]

    # An option given on the command line wins over the image, even at its default value; the rest comes from it.
    from colab_sd.cli import build_parser
    from colab_sd.cli.from_image import apply

    for option, field, value in (("--seed", "seed", 5), ("--seed", "seed", -1), ("--steps", "steps", 25),
                                 ("--prompt", "prompt", "a dog")):
        args = build_parser().parse_args(["generate", "--from", str(first[0]), option, str(value)])
        fields = apply(args.from_image, {"seed": args.seed, "steps": args.steps, "prompt": args.prompt,
                                         "cfg": args.cfg, "model": args.model}, str(library), print)
        assert fields[field] == value and fields["cfg"] == 6.5 and fields["model"] == "tiny-sd1.safetensors"


def test_generate_from_an_image_whose_model_is_missing_is_one_line(library, tmp_path, capsys):
    path = tmp_path / "a1111.png"
    image = Image.new("RGB", (8, 8))
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, "
                                "Model hash: 0123456789, Model: not-here")
    image.save(path, pnginfo=info)
    code, _, err = cli("generate", "--from", str(path), "--dir", str(library), capsys=capsys)
    assert code == 1 and "its model is not in the library (checkpoint not-here [0123456789])" in err
    assert err.count("\n") == 1
    code, _, err = cli("generate", "--from", str(tmp_path / "nope.png"), "--dir", str(library), capsys=capsys)
    assert code == 1 and "does not exist" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- matching


@pytest.fixture
def renamed(library, tmp_path):
    """A library whose files have other names than the images say (and no sidecar hashes for some)."""
    root = tmp_path / "renamed"
    for kind, src, dst in (("checkpoint", "tiny-sd1.safetensors", "my-model.safetensors"),
                           ("lora", "tiny-kohya.safetensors", "styles/grainy.safetensors"),
                           ("embedding", "tiny-emb.safetensors", "neg-words.safetensors"),
                           ("vae", "tiny-vae.safetensors", "clear.safetensors")):
        target = root / kind / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library / kind / src, target)
    return root


def test_matching_by_hash_first_then_name(library, renamed):
    model_hash = metadata.autov2(library / "checkpoint" / "tiny-sd1.safetensors")
    lora_v3 = metadata.lora_hash(library / "lora" / "tiny-kohya.safetensors")  # what A1111 writes
    ti_hash = metadata.embedding_hash(library / "embedding" / "tiny-emb.safetensors")
    vae_hash = metadata.autov2(library / "vae" / "tiny-vae.safetensors")
    text = (f"a cat <lora:tiny-kohya:0.7>, tiny-emb<lora:gone:1>\nNegative prompt: <lora:tiny-kohya:1> blurry\n"
            f"Steps: 3, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 9, Size: 64x64, Model hash: {model_hash}, "
            f"Model: tiny-sd1, VAE hash: {vae_hash}, VAE: tiny-vae.safetensors, Clip skip: 2, "
            f'Lora hashes: "tiny-kohya: {lora_v3}, gone: ffffffffffff", TI hashes: "tiny-emb: {ti_hash}"')
    assert not read_sidecar(renamed / "checkpoint" / "my-model.safetensors")  # nothing known: hashed on demand
    no_hashing = request_from_parameters(from_text(text), renamed, compute_hashes=False)
    assert "model" not in no_hashing.fields and no_hashing.missing  # no name matches and nothing was hashed
    plan = request_from_parameters(from_text(text), renamed)
    fields = plan.fields
    assert fields["model"] == "my-model.safetensors" and fields["vae"] == "clear.safetensors"
    assert fields["prompt"] == "a cat <lora:styles/grainy:0.7>, tiny-emb"  # a missing LoRA's tag goes (named below)
    assert fields["negative_prompt"] == "<lora:tiny-kohya:1> blurry"  # text there, as A1111 reads it
    assert (fields["sampler"], fields["schedule"], fields["steps"], fields["cfg"], fields["clip_skip"]) == \
        ("DPM++ 2M", "Karras", 3, 5.0, 2)
    assert [(r.kind, r.found, r.how) for r in plan.resources] == [
        ("checkpoint", "my-model.safetensors", "hash"), ("vae", "clear.safetensors", "hash"),
        ("lora", "styles/grainy.safetensors", "hash"), ("lora", None, None),
        ("embedding", "neg-words.safetensors", "hash")]
    assert plan.missing_text() == "lora gone [ffffffffffff]"
    assert any("neg-words" in note for note in plan.notes)
    # hashes computed once are written back, so the next look-up is a sidecar read
    assert read_sidecar(renamed / "checkpoint" / "my-model.safetensors")["sha256"].startswith(model_hash)

    by_name = request_from_parameters(from_text("a\nSteps: 2, Seed: 1, Model: tiny-sd1, Model hash: abcdef0123"),
                                      library)
    assert by_name.fields["model"] == "tiny-sd1.safetensors" and by_name.resources[0].how == "name, another hash"
    no_hash = request_from_parameters(from_text("a\nSteps: 2, Seed: 1, Model: tiny-sd1"), library)
    assert no_hash.resources[0].how == "name"


def test_civitai_resources_loras_and_odd_settings_become_notes(library):
    meta = {"prompt": "paper lantern", "steps": 4, "sampler": "DPM++ 3M SDE", "cfgScale": 4, "seed": 3,
            "Model": "tiny-sd1", "Denoising strength": 0.4,
            "resources": [{"name": "tiny-kohya", "type": "lora", "weight": 0.8, "hash": "0000000000"}]}
    plan = request_from_parameters(from_civitai_meta(meta), library)
    assert plan.fields["loras"] == [("tiny-kohya", 0.8)] and plan.fields["model"] == "tiny-sd1.safetensors"
    assert "sampler" not in plan.fields
    assert any("DPM++ 3M SDE" in n for n in plan.notes) and any("img2img" in n for n in plan.notes)
    plan = request_from_parameters(from_text("a\nSteps: 2, Sampler: Euler a, Schedule type: Karras, Seed: 1"),
                                   library)
    assert plan.fields["sampler"] == "Euler a" and "schedule" not in plan.fields and plan.notes


def test_info_command_text_and_json(library, tmp_path, capsys):
    import json

    code, paths, _ = cli("generate", "-m", "tiny-sd1", "-p", "a cat <lora:tiny-kohya:0.5>", "--steps", "2",
                         "--width", "64", "--height", "64", "--seed", "11", "--dir", str(library),
                         "--out", str(tmp_path), capsys=capsys)
    assert code == 0
    assert main(["info", str(paths[0]), "--dir", str(library)]) == 0
    out = capsys.readouterr().out
    assert "prompt: a cat <lora:tiny-kohya:0.5>" in out and "seed 11" in out and "size 64x64" in out
    assert "lora tiny-kohya → tiny-kohya.safetensors (by hash)" in out
    assert main(["info", str(paths[0]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["seed"] == 11 and data["model"] == "tiny-sd1" and data["loras"][0]["name"] == "tiny-kohya"
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    assert main(["info", str(not_image)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("colab-sd: error:") and err.count("\n") == 1


def test_hires_settings_map_to_the_request_hires_fields(library):
    import dataclasses

    from colab_sd.generation.request import GenerationRequest

    text = ("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 123, Size: 64x64, Model: tiny-sd1, "
            "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, "
            "Hires schedule type: Karras, Hires prompt: \"a cat, hires\"")
    plan = request_from_parameters(from_text(text), library)
    names = {f.name for f in dataclasses.fields(GenerationRequest)}
    assert {"hires_scale", "hires_steps", "hires_upscaler", "hires_denoise", "hires_prompt"} <= names
    assert {k: plan.fields[k] for k in ("hires_scale", "hires_steps", "hires_upscaler", "hires_denoise",
                                        "hires_prompt")} == \
        {"hires_scale": 2.0, "hires_steps": 10, "hires_upscaler": "Latent", "hires_denoise": 0.45,
         "hires_prompt": "a cat, hires"}
    assert "strength" not in plan.fields  # hires denoising, not img2img
    assert [n for n in plan.notes if "hires" in n] == [
        "hires fix settings (hires_schedule) are not carried over: this version cannot run them"]
    GenerationRequest(**{**plan.fields, "model": "tiny-sd1"}).validate()  # the request takes what was made
