"""img2img and hires fix for the transformer families (Flux, Z-Image, SD3, Chroma) on the CPU, offline, through
`colab_sd.generate` and the CLI, with the tiny random families of tests/tiny_families.py: denoising strength as
A1111 counts it, the image-to-image pipeline built on the cached modules (no reload, no copy), hires fix's size,
steps and infotext, cancel, and the one-line refusals (inpainting on a family; Flux.2 Klein, which diffusers gives
no image-to-image pipeline).
"""
from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import colab_sd  # noqa: E402
import tiny_families  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.events import StepProgress  # noqa: E402
from colab_sd.generation import load_count, parse_parameters  # noqa: E402
from colab_sd.generation.cache import CACHE  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

PROMPT = "a photo of a dog"
MODELS = {"flux": "tiny-flux-dev-diffusers", "zimage": "tiny-zimage", "sd3": "tiny-sd3-diffusers",
          "chroma": "tiny-chroma-diffusers"}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    built = tiny_families.build_library(root)
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)  # a real upscaler architecture (ESRGAN 2×) with random weights, read by spandrel
    state = ESRGAN(num_filters=8, num_blocks=1, scale=2).state_dict()
    (root / "upscaler").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "upscaler" / "2x-tiny.safetensors"))
    yield root, built
    CACHE.release()


@pytest.fixture(autouse=True)
def offline(families, monkeypatch, tmp_path):
    tiny_families.offline_library(monkeypatch, families[0], tmp_path / "outputs")


def inits() -> tuple:
    """Two clearly different 64² init images (a colour gradient and its mirrored negative)."""
    ramp = np.linspace(0, 255, 64)
    a = np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)), np.full((64, 64), 128.0)], -1)
    return Image.fromarray(a.astype(np.uint8)), Image.fromarray((255 - a[:, ::-1]).astype(np.uint8))


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def totals(events) -> list[int]:
    """The step count of each diffusers call, from the StepProgress events (the last event of each run)."""
    out = []
    for e in events:
        if isinstance(e, StepProgress) and e.step == e.total:
            out.append(e.total)
    return out


def test_flux_img2img_is_diffusers_img2img_with_a1111_steps(families):
    """colab_sd's Flux img2img at 0.5 over 4 steps is diffusers' FluxImg2ImgPipeline running the last 3 steps of
    the 4-step schedule (A1111: int(0.5·4) + 1), with the same seed and distilled guidance."""
    from diffusers import FluxImg2ImgPipeline

    first, _ = inits()
    made = colab_sd.generate(model=MODELS["flux"], prompt=PROMPT, steps=4, seed=9, save=False, init_image=first,
                             strength=0.5)
    pipe = FluxImg2ImgPipeline.from_pipe(families[1]["pipes"]["flux"])
    steps = []
    direct = pipe(prompt=PROMPT, image=first, strength=2.5 / 4, num_inference_steps=4, guidance_scale=3.5,
                  width=64, height=64, max_sequence_length=512, generator=torch.Generator("cpu").manual_seed(9),
                  output_type="pil", callback_on_step_end=lambda p, i, t, k: steps.append(i) or k)
    assert len(steps) == 3
    assert np.abs(pixels(made.images[0]) - pixels(direct.images[0])).mean() < 0.6


def test_flux_hires_same_seed_same_image_resize_to_and_hires_prompt(families):
    """Resize-to 128×96 from 64² covers (128²) then crops the latents centrally; the same seed gives the same
    two-pass image; a hires prompt changes the second pass and is recorded."""
    kw = dict(model=MODELS["flux"], prompt=PROMPT, steps=2, width=64, height=64, seed=4, save=False,
              hires_resize_width=128, hires_resize_height=96, hires_denoise=0.6)
    one, two = colab_sd.generate(**kw), colab_sd.generate(**kw)
    assert one.images[0].size == (128, 96)
    assert np.array_equal(pixels(one.images[0]), pixels(two.images[0]))
    params = parse_parameters(one.parameters[0])
    assert params["Hires resize"] == "128x96" and "Hires upscale" not in params
    other = colab_sd.generate(**kw, hires_prompt="a red house")
    assert parse_parameters(other.parameters[0])["Hires prompt"] == "a red house"
    assert np.abs(pixels(other.images[0]) - pixels(one.images[0])).mean() > 0.01


def test_cancel_during_hires_saves_nothing(families):
    import threading

    cancel = threading.Event()

    def on_event(event):
        if isinstance(event, StepProgress):
            cancel.set()

    result = colab_sd.generate(model=MODELS["flux"], prompt=PROMPT, steps=2, width=64, height=64, seed=3,
                               hires_scale=2, cancel=cancel, on_event=on_event)
    assert result.cancelled and result.images == [] and result.paths == []


def test_inpaint_with_a_family_is_refused_in_one_line(families):
    first, _ = inits()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    loads = load_count()
    with pytest.raises(InputError) as err:
        colab_sd.generate(model=MODELS["flux"], prompt=PROMPT, steps=2, init_image=first, mask=mask, save=False)
    message = str(err.value)
    assert "inpainting with Flux dev is not available" in message and "\n" not in message
    assert load_count() == loads  # refused before anything loads


def test_klein_has_no_img2img_and_says_so(families):
    first, _ = inits()
    for extra in (dict(init_image=first), dict(hires_scale=2)):
        with pytest.raises(InputError) as err:
            colab_sd.generate(model="tiny-klein-diffusers", prompt=PROMPT, steps=2, width=64, height=64,
                              save=False, **extra)
        message = str(err.value)
        assert "Flux.2 Klein" in message and "\n" not in message
        assert ("img2img with" in message) if "init_image" in extra else ("hires fix with" in message)


def test_encode_guard_lets_an_fp32_vae_take_fp16_images():
    """On fp16 GPUs the families decode with an fp32 VAE; an img2img pipeline that hands it the fp16 image (the
    transformer's dtype) would stop with a dtype error, so the guard casts in and back out."""
    from colab_sd.generation.families.second import encode_guard

    vae = tiny_families.tiny_flux_vae()
    image = torch.rand(1, 3, 32, 32, dtype=torch.float16) * 2 - 1
    with pytest.raises(RuntimeError):  # what diffusers would meet without it
        vae.encode(image)
    encode_guard(vae)
    encode_guard(vae)  # once only
    dist = vae.encode(image).latent_dist
    assert dist.mean.dtype == torch.float16 and dist.sample(torch.Generator().manual_seed(0)).dtype == torch.float16
    assert vae.encode(image.float()).latent_dist.mean.dtype == torch.float32  # same dtype: untouched


def _cli(families, tmp_path, capsys, *args):
    """`colab-sd generate` through the CLI's entry point (in this process: the cached model is reused)."""
    import json

    from colab_sd.cli import main

    code = main(["generate", "--model", MODELS["flux"], "--prompt", PROMPT, "--steps", "2", "--seed", "3",
                 "--dir", str(families[0]), "--out", str(tmp_path), "--json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    [path] = [e["path"] for e in events if e.get("status") == "completed"]
    with Image.open(path) as img:
        return img.size, img.text["parameters"]


def test_cli_img2img_and_hires_with_flux(families, tmp_path, capsys):
    first, _ = inits()
    first.save(tmp_path / "init.png")
    size, text = _cli(families, tmp_path, capsys, "--init-image", str(tmp_path / "init.png"), "--denoising-strength", "0.4")
    assert size == (64, 64) and "Denoising strength: 0.4" in text and "Model: tiny-flux-dev-diffusers" in text
    size, text = _cli(families, tmp_path, capsys, "--width", "64", "--height", "64", "--hires-scale", "2")
    assert size == (128, 128)
    assert "Hires upscale: 2, Hires upscaler: Latent" in text and "Denoising strength: 0.7" in text


UPSCALERS = {"flux": "2x-tiny", "zimage": "Latent", "sd3": "Latent (bicubic)", "chroma": "Nearest"}


@pytest.mark.parametrize("key", list(MODELS))
def test_img2img_and_hires_fix_on_the_cached_model(families, key):
    """Per family (one load each): img2img follows the denoising strength, then hires fix; nothing reloads."""
    model = MODELS[key]
    colab_sd.generate(model=model, prompt=PROMPT, steps=2, width=64, height=64, seed=5, save=False)  # loaded
    loads = load_count()
    check_img2img_follows_the_denoising_strength(model)
    check_hires_fix(model, key, UPSCALERS[key])
    assert load_count() == loads  # the image-to-image pipeline is the cached one's modules, not a reload
    entry = CACHE.entry
    img2img = entry.img2img()
    assert type(img2img).__name__ == f"{type(entry.pipe).__name__.removesuffix('Pipeline')}Img2ImgPipeline"
    for name in ("transformer", "vae", "text_encoder", "scheduler"):
        assert getattr(img2img, name) is getattr(entry.pipe, name), name  # shared, not copied


def check_img2img_follows_the_denoising_strength(model):
    """Two different init images give different images at a low strength, ever closer ones as it rises, and the
    same image at 1.0 (pure noise: the init image is ignored). Steps as A1111 counts them: int(d·steps) + 1."""
    first, second = inits()
    gaps, events = {}, []
    for strength in (0.05, 0.5, 1.0):
        made = [colab_sd.generate(model=model, prompt=PROMPT, steps=4, seed=5, save=False, init_image=init,
                                  strength=strength, on_event=events.append) for init in (first, second)]
        gaps[strength] = float(np.abs(pixels(made[0].images[0]) - pixels(made[1].images[0])).mean())
        assert made[0].images[0].size == (64, 64)
        assert parse_parameters(made[0].parameters[0])["Denoising strength"] == f"{strength:g}"
    assert gaps[0.05] > 2 * gaps[0.5] > 0 and gaps[1.0] < 0.05, gaps
    assert totals(events) == [1, 1, 3, 3, 4, 4]  # 4 steps at 0.05 / 0.5 / 1.0: 1, 3 and 4 steps run


def check_hires_fix(model, key, upscaler):
    """64² → 128²: the first pass at the base size, the upscale, then exactly `hires_steps` img2img steps at the
    hires denoising strength; a batch of two with consecutive seeds; A1111/Forge's Hires keys."""
    events = []
    result = colab_sd.generate(model=model, prompt=PROMPT, steps=2, width=64, height=64, seed=21, batch_size=2,
                               hires_scale=2, hires_upscaler=upscaler, hires_steps=3, hires_denoise=0.5,
                               preview_every=1, on_event=events.append)
    assert [img.size for img in result.images] == [(128, 128), (128, 128)]
    assert result.seeds == [21, 22]
    assert totals(events) == [2, 3]  # first pass 2 steps, hires pass exactly its 3
    previews = [e.preview for e in events if isinstance(e, StepProgress)]
    assert len(previews) == 5 and all(p is not None and p.mode == "RGB" for p in previews)  # both passes
    params = parse_parameters(result.parameters[0])
    assert params["Size"] == "64x64" and params["Hires upscale"] == "2" and params["Hires upscaler"] == upscaler
    assert params["Denoising strength"] == "0.5" and params["Hires steps"] == "3"
    assert "Hires sampler" not in params
    if key == "flux":  # Forge writes the distilled guidance of both passes for Flux dev
        assert params["Distilled CFG Scale"] == "3.5" and params["Hires Distilled CFG Scale"] == "3.5"
        assert "Hires CFG Scale" not in params
    assert result.paths and all(p.is_file() for p in result.paths)


def test_panel_second_pass_rows_follow_the_family(families, tmp_path):
    """The Generate panel offers hires fix and img2img for Flux (no mask, no hires sampler: they mean nothing
    there), runs Send to img2img with a Flux image, and hides both rows for Flux.2 Klein (and sends nothing)."""
    pytest.importorskip("ipywidgets")
    from colab_sd.ui import settings
    from colab_sd.ui.app import App

    settings.settings_path(families[0]).unlink(missing_ok=True)
    panel = App(models_dir=families[0], outputs_dir=tmp_path / "out").generate
    second = panel.second
    panel.model.value = "tiny-flux-dev.safetensors"
    assert second.hires.widget.layout.display is None and second.img2img.widget.layout.display is None
    assert second.img2img.inpaint.layout.display == "none" and second.img2img.mask_box.layout.display == "none"
    assert second.hires.sampler.layout.display == "none"
    panel.prompt.value = PROMPT
    panel.steps.value = 2
    panel.size.value = "Custom"
    panel.width.value, panel.height.value = 64, 64
    panel.seed.value = 9
    panel.button.click()
    assert "✓ 1 image" in panel.status.value, panel.status.value
    item = panel.gallery_items[0]
    item.actions.children[0].click()  # Send to img2img
    second.img2img.strength.value = 0.5
    fields = panel.request_fields()
    assert fields["init_image"] is item.source_image and fields["strength"] == 0.5 and "mask" not in fields
    panel.button.click()
    assert "✓ 1 image" in panel.status.value, panel.status.value
    assert "Denoising strength: 0.5" in panel.gallery_items[0].parameters

    panel.model.value = "tiny-klein.safetensors"
    assert second.hires.widget.layout.display == "none" and second.img2img.widget.layout.display == "none"
    assert "init_image" not in panel.request_fields() and "hires_scale" not in panel.request_fields()
    panel.model.value = "tiny-sd3.safetensors"
    assert second.img2img.widget.layout.display is None and second.img2img.inpaint.layout.display == "none"
