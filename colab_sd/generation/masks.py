"""Image and mask preparation for img2img and inpainting, as A1111 does it (modules/images.py, masking.py,
processing.py); numpy and PIL only, no torch.

- `resize_image(mode, image, w, h)`: A1111's resize modes 0 "Just resize", 1 "Crop and resize", 2 "Resize and
  fill" (mode 3, "Just resize (latent upscale)", resizes latents and is done in passes.py).
- `blur_mask(mask, radius)`: OpenCV's GaussianBlur as A1111 calls it (kernel 2·int(2.5σ+0.5)+1, reflect-101
  borders), x then y, so blurred values match A1111's rather than PIL's GaussianBlur.
- `crop_region`, `expand_crop_region`: "Only masked" inpaint area with padding, widened to the processing aspect.
- `fill_masked`: "Masked content: fill" (masked pixels from heavily blurred surroundings).
- `overlay`: the original pasted back over the result wherever the (blurred) mask is below 1, so every pixel the
  mask does not touch is exactly the original.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
INPAINT_AREAS = {"whole": "Whole picture", "masked": "Only masked"}
MASKED_CONTENT = {"original": "original", "fill": "fill", "latent-noise": "latent noise",
                  "latent-nothing": "latent nothing"}


def resize_mode_index(mode) -> int:
    """0–3 from an index or an A1111 name ("Crop and resize", "crop", "fill", "latent")."""
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode < len(RESIZE_MODES):
        return mode
    text = str(mode).strip().lower()
    for i, name in enumerate(RESIZE_MODES):
        if text == name.lower():
            return i
    short = {"just": 0, "resize": 0, "stretch": 0, "crop": 1, "fill": 2, "latent": 3}
    if text in short:
        return short[text]
    raise InputError(f"unknown resize mode {mode!r}: use one of {', '.join(RESIZE_MODES)}")


def resize_image(mode: int, image, width: int, height: int):
    """A1111 `images.resize_image` for modes 0–2 (Lanczos); mode 3 resizes like 0 here."""
    from PIL import Image

    if mode in (0, 3):
        return image.resize((width, height), Image.LANCZOS)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:  # cover, then centre crop
        w = width if ratio > src_ratio else image.width * height // image.height
        h = height if ratio <= src_ratio else image.height * width // image.width
        resized = image.resize((w, h), Image.LANCZOS)
        out = Image.new(image.mode, (width, height))
        out.paste(resized, box=(width // 2 - w // 2, height // 2 - h // 2))
        return out
    # mode 2: fit, then stretch the outermost row / column into the empty bands
    w = width if ratio < src_ratio else image.width * height // image.height
    h = height if ratio >= src_ratio else image.height * width // image.width
    resized = image.resize((w, h), Image.LANCZOS)
    out = Image.new(image.mode, (width, height))
    out.paste(resized, box=(width // 2 - w // 2, height // 2 - h // 2))
    if ratio < src_ratio:
        fill = height // 2 - h // 2
        if fill > 0:
            out.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            out.paste(resized.resize((width, fill), box=(0, resized.height, width, resized.height)),
                      box=(0, fill + h))
    elif ratio > src_ratio:
        fill = width // 2 - w // 2
        if fill > 0:
            out.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            out.paste(resized.resize((fill, height), box=(resized.width, 0, resized.width, height)),
                      box=(fill + w, 0))
    return out


def mask_array(mask) -> np.ndarray:
    """A mask image as float32 in [0, 1], white = repaint; an RGBA mask with transparency uses its alpha."""
    if mask.mode in ("RGBA", "LA") and mask.getextrema()[-1][0] < 255:
        return np.asarray(mask.getchannel("A"), dtype=np.float32) / 255.0
    return np.asarray(mask.convert("L"), dtype=np.float32) / 255.0


def _gaussian_kernel(sigma: float) -> np.ndarray:
    size = 2 * int(2.5 * sigma + 0.5) + 1
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


def blur_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur with σ = `radius` (A1111 "Mask blur"), x then y, reflect-101 borders; 0 leaves it."""
    if radius <= 0:
        return mask
    kernel = _gaussian_kernel(float(radius))
    half = len(kernel) // 2
    out = mask.astype(np.float64)
    for axis in (1, 0):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (half, half)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > half else "edge")
        out = sum(kernel[i] * np.take(padded, range(i, i + out.shape[axis]), axis=axis) for i in range(len(kernel)))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def crop_region(mask: np.ndarray, padding: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) around the mask's non-zero pixels, widened by `padding`, clipped to the image."""
    ys, xs = np.nonzero(mask > 0)
    height, width = mask.shape
    return (max(int(xs.min()) - padding, 0), max(int(ys.min()) - padding, 0),
            min(int(xs.max()) + 1 + padding, width), min(int(ys.max()) + 1 + padding, height))


def expand_crop_region(region, target_w: int, target_h: int, image_w: int, image_h: int):
    """A1111 `masking.expand_crop_region`: grow the box to the processing aspect, staying inside the image."""
    x1, y1, x2, y2 = region
    ratio_box, ratio = (x2 - x1) / (y2 - y1), target_w / target_h
    if ratio_box > ratio:  # too wide: grow height
        desired = (x2 - x1) / ratio
        diff = int(desired - (y2 - y1))
        y1 -= diff // 2
        y2 += diff - diff // 2
        if y2 >= image_h:
            y1 -= y2 - image_h
            y2 = image_h
        if y1 < 0:
            y2 -= y1
            y1 = 0
        y2 = min(y2, image_h)
    else:
        desired = (y2 - y1) * ratio
        diff = int(desired - (x2 - x1))
        x1 -= diff // 2
        x2 += diff - diff // 2
        if x2 >= image_w:
            x1 -= x2 - image_w
            x2 = image_w
        if x1 < 0:
            x2 -= x1
            x1 = 0
        x2 = min(x2, image_w)
    return x1, y1, x2, y2


def fill_masked(image, mask: np.ndarray):
    """A1111 `masking.fill`: the masked area painted from ever less blurred copies of the unmasked pixels."""
    from PIL import Image, ImageFilter

    rgba = Image.new("RGBA", image.size)
    keep = Image.fromarray(((1.0 - (mask > 0.5)) * 255).astype(np.uint8))
    source = Image.new("RGBa", image.size)
    source.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = source.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            rgba.alpha_composite(blurred)
    result = rgba.convert("RGB")
    return Image.composite(image.convert("RGB"), result, keep)


def overlay(original, result, alpha_mask: np.ndarray):
    """`result` where the mask is 1, the original where it is 0, blended between (A1111's overlay image)."""
    from PIL import Image

    a = np.asarray(original.convert("RGB"), dtype=np.float32)
    b = np.asarray(result.convert("RGB").resize(original.size, Image.LANCZOS), dtype=np.float32)
    m = alpha_mask[..., None]
    out = np.where(m <= 0, a, np.where(m >= 1, b, a * (1 - m) + b * m))
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
