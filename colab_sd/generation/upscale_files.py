"""`colab_sd.upscale(...)`: image files (or PIL images) in, upscaled PNGs out, their A1111 text kept.

The PNG keeps the source's `parameters` text (so the upscaled picture still re-runs as it was made) and gets
A1111's Extras keys in its own `postprocessing` chunk: `Postprocess upscale by: 4, Postprocess upscaler: name`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError
from ..events import Completed, Info, guard
from .upscalers import DEFAULT_OVERLAP, resolve_upscaler, target_size, upscale_image

MAX_PIXELS = 8192 * 8192  # a bigger result is surely a typo in the scale


@dataclass
class UpscaleResult:
    """`images[i]` was made from `sources[i]` and saved at `paths[i]` (empty when saving was off)."""

    images: list
    paths: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    upscaler: str = ""


def open_image(value, label: str = "image"):
    """A PIL RGB image from a path or a PIL image; a file PIL cannot read is an InputError naming it."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(f"{label} not found: {path}")
        try:
            with Image.open(path) as img:
                img.load()
                image = img.convert("RGB")
                image.info.update({k: v for k, v in img.info.items() if isinstance(v, str)})
                return image
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            raise InputError(f"{label} {path.name} is not an image PIL can read (PNG, JPEG, WebP…), or it is "
                             f"damaged") from None
    if hasattr(value, "convert"):
        image = value.convert("RGB")
        image.info.update({k: v for k, v in getattr(value, "info", {}).items() if isinstance(v, str)})
        return image
    raise InputError(f"{label} must be a file path or a PIL image, not {type(value).__name__}")


def default_scale(upscaler: str, models_dir=None) -> float:
    """What "upscale" means without a scale: the model's own factor (4 for a 4x model), 2 for a PIL filter."""
    from .upscalers import load_upscaler

    _, path = resolve_upscaler(upscaler, models_dir)
    return float(load_upscaler(path).scale) if path is not None else 2.0


def _destination(folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / f"{stem}.png", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.png"
    return path


def _save(image, path: Path, parameters: Optional[str], postprocessing: str) -> Path:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    info.add_text("postprocessing", postprocessing)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG", pnginfo=info, compress_level=1)
    os.replace(tmp, path)  # never a half-written PNG under the final name
    return path


def upscale(images, upscaler: str = "Lanczos", scale: Optional[float] = 2.0,
            resize_to: Optional[tuple[int, int]] = None, models_dir=None, outputs_dir=None, save: bool = True,
            device: Optional[str] = None, tile: Optional[int] = None, overlap: int = DEFAULT_OVERLAP,
            on_event: Optional[Callable] = None) -> UpscaleResult:
    """Upscale image files or PIL images with an upscaler from `upscaler/` (or Lanczos / Nearest).

    `scale` multiplies each side (A1111 "Upscale by"); `resize_to` = (width, height) wins over it. Saved as
    `<outputs>/upscaled/<name>-<upscaler>-<W>x<H>.png`. Every input is checked (readable, result not absurdly
    large) before the model loads. Raises InputError / NotFoundError with one line saying what to fix.
    """
    from .metadata import outputs_root

    emit = guard(on_event)
    items = [images] if isinstance(images, (str, os.PathLike)) or hasattr(images, "convert") else list(images)
    if not items:
        raise InputError("no images to upscale")
    name, _ = resolve_upscaler(upscaler, models_dir)
    opened = []
    for item in items:
        image = open_image(item)
        width, height = target_size(image.size, scale, resize_to)
        if width * height > MAX_PIXELS:
            raise InputError(f"{width}x{height} is over the {MAX_PIXELS // 1_000_000} MP limit: use a smaller scale")
        label = Path(item).stem if isinstance(item, (str, os.PathLike)) else "image"
        opened.append((label, image))
    result = UpscaleResult(images=[], upscaler=name)
    folder = outputs_root(outputs_dir) / "upscaled"
    for label, image in opened:
        emit(Info(f"upscaling {label} ({image.width}x{image.height}) with {name}"))
        out = upscale_image(image, name, scale, resize_to, models_dir, device, tile, overlap, emit)
        result.images.append(out)
        result.sources.append(label)
        factor = f"{out.width / image.width:g}"
        postprocessing = f"Postprocess upscale by: {factor}, Postprocess upscaler: {name}"
        out.info["postprocessing"] = postprocessing
        if image.info.get("parameters"):
            out.info["parameters"] = image.info["parameters"]
        if save:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            path = _save(out, _destination(folder, f"{label}-{safe}-{out.width}x{out.height}"),
                         image.info.get("parameters"), postprocessing)
            result.paths.append(path)
            emit(Completed(path=str(path), bytes=path.stat().st_size, sha256=None))
    return result
