"""Upscalers: the library's `upscaler/` models through spandrel, PIL's Lanczos / Nearest, and A1111's latent modes.

Names are A1111's: "None" and "Lanczos" (PIL Lanczos), "Nearest", the six latent modes (hires fix only, they
resize the latent and never decode), and every `.pth` / `.safetensors` file in `upscaler/` by its name without
extension (e.g. "4x-UltraSharp"). spandrel (chaiNNer-org/spandrel, MIT) recognises the architecture (ESRGAN,
Real-ESRGAN, SwinIR, HAT, DAT, …) from the weights; a file it does not know is refused with one line naming it.

Safety: a pickled `.pth` is walked with pickletools (colab_sd.probe.pickles, the same check as `.ckpt`
checkpoints) before anything is unpickled; one that would import more than tensors need is refused. spandrel's
own restricted unpickler then loads it. TorchScript `.pt` files are not offered: loading one runs its code.

Memory: models run tile by tile (tiles.py) in fp16 on CUDA when the architecture allows it (SwinIR, HAT, DAT
give black images in fp16: A1111 PRs #14524, #14809), fp32 otherwise; an out-of-memory error halves the tile and
tries again. Between uses the model waits on the CPU, so the diffusion model has the GPU to itself.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Optional

from ..errors import GenerationError, InputError, NotFoundError
from ..library import find_model, list_models, models_root

log = logging.getLogger("colab_sd.generation")

# A1111 modules/shared.py `latent_upscale_modes`: name → (torch interpolate mode, antialias).
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# A1111 "None" is a plain Lanczos resize; "Lanczos" and "Nearest" are PIL's filters.
PIXEL_MODES = ("None", "Lanczos", "Nearest")
UPSCALER_EXTENSIONS = (".pth", ".safetensors")
MAX_MODEL_PASSES = 3  # A1111 runs a 2× model at most three times to reach a larger scale, then Lanczos
DEFAULT_OVERLAP = 16
MIN_TILE = 32


def library_upscalers(models_dir=None) -> dict[str, Path]:
    """Name (file name without extension) → path for every usable file in `upscaler/`; no torch."""
    root = models_root(models_dir)
    found = {}
    for entry in list_models(root, ["upscaler"]):
        if entry.path.is_file() and entry.path.name.lower().endswith(UPSCALER_EXTENSIONS):
            found.setdefault(entry.stem, entry.path)
    return found


def upscaler_names(models_dir=None, latent: bool = True) -> list[str]:
    """Every upscaler name to offer: latent modes (hires fix only), pixel filters, then the library's models."""
    return (list(LATENT_MODES) if latent else []) + list(PIXEL_MODES) + sorted(library_upscalers(models_dir))


def is_latent(name: str) -> bool:
    return _canonical(name) in LATENT_MODES


def _canonical(name: Optional[str]) -> str:
    """A1111's spelling of a built-in name typed in any case ("lanczos", "latent (bicubic)"); others unchanged."""
    text = (name or "None").strip()
    for known in list(LATENT_MODES) + list(PIXEL_MODES):
        if text.lower() == known.lower():
            return known
    return text


def resolve_upscaler(name: Optional[str], models_dir=None) -> tuple[str, Optional[Path]]:
    """(canonical name, model path or None for a built-in) for a name, a library file name or a path.

    Raises NotFoundError listing what there is, InputError for a file spandrel cannot take by its extension.
    """
    text = _canonical(name)
    if text in LATENT_MODES or text in PIXEL_MODES:
        return text, None
    path = Path(text).expanduser()
    if not path.is_file():
        entry = find_model(models_root(models_dir), "upscaler", text)
        if entry is None:
            names = ", ".join(upscaler_names(models_dir))
            raise NotFoundError(f"upscaler {text!r} not found: use one of {names} (or put a .pth / .safetensors "
                                f"model in {models_root(models_dir) / 'upscaler'})")
        path = entry.path
    if not path.name.lower().endswith(UPSCALER_EXTENSIONS):
        raise InputError(f"{path.name}: upscalers are .pth or .safetensors files (a .pt TorchScript file would run "
                         f"its own code when loaded)")
    stem = path.name[: -len(path.suffix)]
    return stem, path


# ------------------------------------------------------------------------------------------------- loading


def check_pickle(path: Path) -> None:
    """Refuse a pickled file that would import anything a state dict does not need; nothing is unpickled."""
    from ..probe.pickles import read_pickle_keys, unexpected_globals

    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(0)
            scan = read_pickle_keys(fh, os.fstat(fh.fileno()).st_size, head == b"PK\x03\x04")
    except (ValueError, KeyError, IndexError, TypeError, EOFError, OSError) as err:
        raise InputError(f"{path.name} is not a readable torch file ({str(err)[:150]}): download it again, or "
                         f"use a .safetensors version") from None
    odd = unexpected_globals(scan.globals)
    if odd:
        raise InputError(f"{path.name} would run code when loaded (it imports {', '.join(odd[:3])}): colab_sd does "
                         f"not load it; get a .safetensors version of this upscaler")
    if scan.problem:
        raise InputError(f"{path.name} is not an upscaler model: {scan.problem}")


class _Loaded:
    """The one upscaler kept loaded (on the CPU between uses), keyed by file identity."""

    def __init__(self):
        self.lock = threading.RLock()
        self.key = None
        self.model = None


_LOADED = _Loaded()


def load_upscaler(path: Path):
    """A spandrel ImageModelDescriptor for the file, on the CPU in fp32; cached while the file is unchanged.

    Raises InputError (one line, naming the file) for a booby-trapped pickle, an architecture spandrel does not
    know, or a model that is not an image-to-image one.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, int(stat.st_mtime))
    with _LOADED.lock:
        if _LOADED.key == key:
            return _LOADED.model
        if path.suffix.lower() != ".safetensors":
            check_pickle(path)  # before spandrel's torch.load sees a byte of it
        import spandrel

        try:
            model = spandrel.ModelLoader(device="cpu").load_from_file(str(path))
        except spandrel.UnsupportedModelError:
            raise InputError(f"{path.name}: spandrel does not recognise this model's architecture (it knows ESRGAN, "
                             f"Real-ESRGAN, SwinIR, HAT, DAT, SPAN and more): it is not an upscaler it can run")
        except Exception as err:
            first = str(err).strip().splitlines()[0][:150] if str(err).strip() else type(err).__name__
            raise InputError(f"{path.name} could not be loaded as an upscaler ({first}): the file may be "
                             f"incomplete; download it again") from None
        if not isinstance(model, spandrel.ImageModelDescriptor):
            raise InputError(f"{path.name} is a {model.purpose} model ({model.architecture.name}), not an image "
                             f"upscaler")
        if model.input_channels != 3 or model.output_channels != 3:
            raise InputError(f"{path.name} takes {model.input_channels}-channel images; only RGB upscalers work")
        _LOADED.key, _LOADED.model = key, model.eval()
        return _LOADED.model


def release_upscaler() -> None:
    """Forget the cached upscaler model."""
    with _LOADED.lock:
        _LOADED.key = _LOADED.model = None


# ------------------------------------------------------------------------------------------------- running


def target_size(size: tuple[int, int], scale: Optional[float], resize_to: Optional[tuple[int, int]]) -> tuple[int, int]:
    """(width, height) to produce: `resize_to` when given, else `size` × `scale`, rounded to whole pixels."""
    if resize_to:
        return int(resize_to[0]), int(resize_to[1])
    if scale is None or not 0 < float(scale) <= 16:
        raise InputError(f"upscale factor must be above 0 and at most 16, not {scale}")
    return max(1, round(size[0] * float(scale))), max(1, round(size[1] * float(scale)))


def default_tile(model, device: str) -> int:
    """A1111 uses 192; a T4 takes 512 for ESRGAN-class models in fp16 and about 256 for transformer ones."""
    from spandrel import ModelTiling

    if model.tiling == ModelTiling.INTERNAL:
        return 0
    if device.startswith("cuda"):
        return 512 if model.supports_half else 256
    return 256


def _run_model(model, image, device: str, tile: Optional[int], overlap: int, emit: Callable):
    """One pass of the model over a PIL image: PIL → tensor → tiles → PIL, on `device`."""
    import numpy as np
    import torch
    from PIL import Image

    half = device.startswith("cuda") and model.supports_half
    dtype = torch.float16 if half else torch.float32
    model.to(device).to(dtype)
    try:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(device, dtype)
        minimum = max(MIN_TILE, model.size_requirements.minimum)
        chosen = default_tile(model, device) if tile is None else tile

        def smaller(new_tile: int) -> None:
            from ..events import Info

            emit(Info(f"upscaler out of memory: trying {new_tile} px tiles"))

        from .tiles import run_adaptive

        with torch.inference_mode():
            out = run_adaptive(model, tensor, model.scale, chosen, overlap, minimum, smaller)
        pixels = (out[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(pixels)
    finally:
        if device.startswith("cuda"):
            model.to("cpu")
            from .cache import free_memory

            free_memory()


def upscale_image(image, upscaler: Optional[str] = "Lanczos", scale: Optional[float] = 2.0,
                  resize_to: Optional[tuple[int, int]] = None, models_dir=None, device: Optional[str] = None,
                  tile: Optional[int] = None, overlap: int = DEFAULT_OVERLAP, emit: Optional[Callable] = None):
    """A PIL image upscaled to `resize_to` (width, height) or by `scale`; returns a PIL RGB image.

    A model runs (at its own scale) up to three times until the result is at least the target, then Lanczos
    brings it to the exact size (A1111's `upscaler.upscale`). `tile` None picks a size for the device, 0 runs
    the whole image at once. Raises InputError for a latent mode (hires fix only) or an unusable model.
    """
    from PIL import Image

    from .loader import is_oom, pick_device

    emit = emit or (lambda event: None)
    name, path = resolve_upscaler(upscaler, models_dir)
    if name in LATENT_MODES:
        raise InputError(f"{name} resizes latents and works only inside hires fix: pick Lanczos or a model")
    width, height = target_size(image.size, scale, resize_to)
    current = image.convert("RGB")
    if path is not None:
        model = load_upscaler(path)
        device = pick_device(device)
        for _ in range(MAX_MODEL_PASSES):
            if current.width >= width and current.height >= height:
                break
            try:
                current = _run_model(model, current, device, tile, overlap, emit)
            except Exception as err:
                if not is_oom(err):
                    raise
                raise GenerationError(f"out of memory upscaling {current.width}x{current.height} with {name} even "
                                      f"in {MIN_TILE} px tiles: free memory (release the model) or use Lanczos") from None
    if current.size != (width, height):
        resample = Image.NEAREST if name == "Nearest" else Image.LANCZOS
        current = current.resize((width, height), resample)
    return current


def upscale_latents(latents, name: str, size: tuple[int, int]):
    """Latents (B, C, h, w) resized to `size` = (height, width) in latent pixels with an A1111 latent mode."""
    import torch.nn.functional as F

    mode, antialias = LATENT_MODES[_canonical(name)]
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    if antialias:
        kwargs["antialias"] = True
    return F.interpolate(latents, size=size, mode=mode, **kwargs)
