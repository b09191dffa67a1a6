"""img2img and inpainting on the CPU with the tiny models: pixels outside the (blurred) mask stay the original's,
every inpaint area and masked content runs, 9-channel inpainting checkpoints (SD1 and SDXL) load and generate,
and bad masks are one-line errors. The A1111 mask maths (blur kernel, crop box) is checked against the reference."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"

import colab_sd  # noqa: E402
import tiny_models  # noqa: E402
from colab_sd.errors import InputError  # noqa: E402
from colab_sd.generation import parse_parameters  # noqa: E402
from colab_sd.generation import masks  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"), pytest.mark.usefixtures("offline")]

SMALL = dict(steps=2, seed=5, save=False, prompt="a photo of a cat", strength=0.75)


def nine_channel(family: str, path):
    """A tiny inpainting checkpoint: the tiny pipeline with a 9-channel UNet, in the original single-file layout."""
    from diffusers import UNet2DConditionModel

    pipe = tiny_models.build_sdxl() if family == "sdxl" else tiny_models.build_sd1()
    config = {**pipe.unet.config, "in_channels": 9}
    torch.manual_seed(3)
    pipe.register_modules(unet=UNet2DConditionModel.from_config(config))
    return tiny_models.save_single_file(pipe, family, path)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tiny_models.copy_library(tmp_path_factory.mktemp("models"))
    nine_channel("sd1", root / "checkpoint" / "tiny-sd1-inpainting.safetensors")
    nine_channel("sdxl", root / "checkpoint" / "tiny-sdxl-inpainting.safetensors")
    return root


@pytest.fixture(scope="module")
def init_image():
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def square_mask(size=64, box=(20, 24, 40, 44)) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, box)
    return mask


def outside(mask: Image.Image, blur: int) -> np.ndarray:
    """Where the blurred mask is exactly 0: the pixels A1111 leaves as they were."""
    return masks.blur_mask(masks.mask_array(mask), blur) <= 0


@pytest.mark.parametrize("content", ["original", "fill", "latent-noise", "latent-nothing"])
def test_inpaint_leaves_pixels_outside_the_mask_untouched(init_image, content):
    mask = square_mask()
    result = colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=mask, mask_blur=4,
                               masked_content=content)
    out = np.asarray(result.images[0])
    keep = outside(mask, 4)
    assert keep.sum() > 2000 and (~keep).sum() > 400
    assert np.array_equal(out[keep], np.asarray(init_image)[keep])
    assert not np.array_equal(out[~keep], np.asarray(init_image)[~keep])  # the masked part was repainted
    params = parse_parameters(result.parameters[0])
    assert params["Mask blur"] == "4" and params["Denoising strength"] == "0.75"
    assert params.get("Masked content") == (None if content == "original" else content.replace("-", " "))


def test_only_masked_area_with_padding(init_image):
    mask = square_mask(box=(8, 8, 20, 16))
    result = colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=mask, mask_blur=0,
                               inpaint_area="masked", inpaint_padding=4, width=64, height=64)
    out = np.asarray(result.images[0])
    keep = outside(mask, 0)
    assert np.array_equal(out[keep], np.asarray(init_image)[keep])
    params = parse_parameters(result.parameters[0])
    assert params["Inpaint area"] == "Only masked" and params["Masked area padding"] == "4"
    assert "Mask blur" not in params


def test_sdxl_inpaint_with_an_ordinary_checkpoint(init_image):
    mask = square_mask()
    result = colab_sd.generate(**SMALL, model="tiny-sdxl", init_image=init_image, mask=mask, mask_blur=2)
    keep = outside(mask, 2)
    assert np.array_equal(np.asarray(result.images[0])[keep], np.asarray(init_image)[keep])


@pytest.mark.parametrize("model", ["tiny-sd1-inpainting", "tiny-sdxl-inpainting"])
def test_nine_channel_checkpoints_load_and_generate(init_image, model):
    from colab_sd.generation.cache import CACHE

    plain = colab_sd.generate(**SMALL, model=model, width=64, height=64)
    assert plain.images[0].size == (64, 64)
    assert CACHE.entry.pipe.unet.config.in_channels == 9
    assert float(np.asarray(plain.images[0]).std()) > 0  # a picture, not a blank
    mask = square_mask()
    inpainted = colab_sd.generate(**SMALL, model=model, init_image=init_image, mask=mask, mask_blur=4,
                                  masked_content="latent-noise")
    keep = outside(mask, 4)
    assert np.array_equal(np.asarray(inpainted.images[0])[keep], np.asarray(init_image)[keep])


def test_img2img_resize_modes(init_image):
    wide = init_image.resize((96, 64))
    for mode in ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)"):
        result = colab_sd.generate(**SMALL, model="tiny-sd1", init_image=wide, resize_mode=mode, width=64, height=64)
        assert result.images[0].size == (64, 64), mode
    filled = masks.resize_image(2, Image.new("RGB", (64, 32), (200, 10, 10)), 64, 64)
    assert filled.getpixel((0, 0)) == (200, 10, 10)  # the bands are stretched edge pixels, not black


def test_bad_masks_and_images_are_one_line_errors(init_image, tmp_path):
    with pytest.raises(InputError, match=r"^the mask is empty \(all black\)"):
        colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=Image.new("L", (64, 64), 0))
    with pytest.raises(InputError, match=r"^the mask covers the whole image \(all white\): that is img2img"):
        colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=Image.new("L", (64, 64), 255))
    with pytest.raises(InputError, match="a mask needs an init image"):
        colab_sd.generate(**SMALL, model="tiny-sd1", mask=square_mask())
    broken = tmp_path / "mask.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"^mask mask\.png is not an image PIL can read"):
        colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=broken)
    with pytest.raises(InputError, match="unknown masked content 'noise'"):
        colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=square_mask(), masked_content="noise")
    seen = []
    result = colab_sd.generate(**SMALL, model="tiny-sd1", init_image=init_image, mask=square_mask(128, (40, 48, 80, 88)),
                               on_event=seen.append)
    assert result.images[0].size == (64, 64)
    assert any("the mask is 128x128 and the image 64x64: the mask was resized" in getattr(e, "message", "")
               for e in seen)


def test_a1111_mask_maths():
    # reference §4.3 / conformance 15: blur σ 4 → a 21-px kernel; bbox (200,200,300,240) on 512², padding 32
    assert len(masks._gaussian_kernel(4)) == 21
    mask = np.zeros((512, 512), np.float32)
    mask[200:240, 200:300] = 1
    box = masks.crop_region(mask, 32)
    assert box == (168, 168, 332, 272)
    assert masks.expand_crop_region(box, 512, 512, 512, 512) == (168, 138, 332, 302)
    assert masks.expand_crop_region(box, 512, 768, 512, 512) == (168, 97, 332, 343)
    blurred = masks.blur_mask(mask, 4)
    assert blurred[220, 250] == pytest.approx(1.0) and blurred[220, 150] == 0 and 0 < blurred[220, 195] < 1
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((2, 2), (0, 0, 0, 255))
    assert masks.mask_array(rgba)[2, 2] == 1.0 and masks.mask_array(rgba)[0, 0] == 0.0
