"""What to generate: one validated request object (no torch here, so the UI and CLI can check input cheaply)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import InputError
from .prompt import LoraSpec
from .samplers import DEFAULT_SAMPLER, DEFAULT_SCHEDULE, resolve_sampler

MAX_SEED = 2**64 - 1  # torch.Generator's range; A1111 seeds are below 2**32, ComfyUI's go up to here
MAX_SIDE = 4096
MAX_STEPS = 500


@dataclass
class GenerationRequest:
    """One txt2img (or img2img, with `init_image`) job.

    `model` is a library name in `checkpoint/` (with or without extension), a `.safetensors` / `.ckpt` path, a
    diffusers folder, or a Hugging Face repo id. `width`/`height` None means the family's native size
    (512 SD1, 768 SD2-v, 1024 SDXL). `seed` -1 picks a random one (reported in the result). `loras` take
    "name:0.8", (name, 0.8) or LoraSpec; `<lora:name:0.8>` in the prompt works too. Embeddings in `embedding/`
    are used by writing their file name in a prompt; `embeddings` names extra ones to load.
    """

    prompt: str = ""
    negative_prompt: str = ""
    model: Any = ""
    vae: Optional[str] = None
    loras: list = field(default_factory=list)
    embeddings: list = field(default_factory=list)
    sampler: str = DEFAULT_SAMPLER
    schedule: str = DEFAULT_SCHEDULE
    steps: Optional[int] = None  # None: the model family's default (25 SD, 9 Z-Image Turbo, 28 Flux dev, 4 schnell)
    cfg: Optional[float] = None  # None: the family's (7 SD, 0 Z-Image Turbo, distilled 3.5 Flux dev)
    width: Optional[int] = None
    height: Optional[int] = None
    seed: int = -1
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    init_image: Any = None  # a path or a PIL image: img2img
    strength: float = 0.75
    resize_mode: Any = 0  # A1111's: 0 Just resize, 1 Crop and resize, 2 Resize and fill, 3 Just resize (latent upscale)
    # inpainting (with init_image): white = repaint; see generation/inpaint.py
    mask: Any = None  # a path, a PIL image or a float array
    mask_blur: int = 4
    inpaint_area: str = "whole"  # "whole" (Whole picture) or "masked" (Only masked)
    inpaint_padding: int = 32  # Masked area padding, px
    masked_content: str = "original"  # "original", "fill", "latent-noise", "latent-nothing"
    # hires fix (txt2img): any of scale / resize / upscaler / steps turns it on; see generation/hires.py
    hires_scale: Optional[float] = None  # Upscale by (2 when hires is on without it)
    hires_resize_width: Optional[int] = None  # Resize width to (0/None: by scale)
    hires_resize_height: Optional[int] = None
    hires_upscaler: Optional[str] = None  # "Latent" (default), another latent mode, Lanczos, or an upscaler/ model
    hires_steps: Optional[int] = None  # 0/None: the first pass's steps
    hires_denoise: Optional[float] = None  # Denoising strength of the hires pass (0.7)
    hires_sampler: Optional[str] = None  # None: the first pass's
    hires_prompt: str = ""  # "": the first pass's
    hires_negative_prompt: str = ""
    hires_cfg: Optional[float] = None  # None: the first pass's CFG scale
    # where things are and how to run
    models_dir: Optional[str] = None
    outputs_dir: Optional[str] = None
    save: bool = True
    device: Optional[str] = None  # "cuda", "cpu"; None: CUDA when there is one
    dtype: Optional[str] = None  # "fp16", "bf16", "fp32"; None: fp16 on CUDA, fp32 on CPU
    low_vram: bool = False  # model CPU offload + VAE tiling
    # the memory plan of a newer family (Flux, Z-Image…), forced instead of chosen; SD models ignore both
    placement: Optional[str] = None  # "gpu", "model_offload", "sequential_offload"; None: the plan decides
    text_encoder_precision: Optional[str] = None  # "fp16", "8-bit", "4-bit" (bitsandbytes, CUDA); None: the plan's
    vae_tiling: bool = False
    preview_every: int = 0  # a cheap latent preview every N steps (0: none)
    prediction: Optional[str] = None  # "epsilon" / "v_prediction": override for SD2 / v-pred SDXL models
    config: Optional[str] = None  # a diffusers config folder (or repo id) for a single-file model
    on_event: Optional[Callable] = field(default=None, repr=False, compare=False)
    cancel: Any = field(default=None, repr=False, compare=False)  # a threading.Event; set it to stop after a step
    tokens: Any = field(default=None, repr=False, compare=False)  # a TokenStore: the HF token for a Hub repo model

    def replace(self, **fields) -> "GenerationRequest":
        return dataclasses.replace(self, **fields)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("on_event", "cancel", "tokens")}
        data["loras"] = [dataclasses.asdict(LoraSpec.parse(x)) for x in self.loras]
        for key in ("init_image", "mask"):
            if data[key] is not None and not isinstance(data[key], (str, os.PathLike)):
                data[key] = "<image>"
        return data

    @classmethod
    def from_fields(cls, request: Optional["GenerationRequest"] = None, **fields) -> "GenerationRequest":
        """A request from another one plus overrides, or from fields alone; unknown fields are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        aliases = {"negative": "negative_prompt", "cfg_scale": "cfg", "guidance_scale": "cfg", "n": "batch_count",
                   "num_inference_steps": "steps", "image": "init_image", "lora": "loras", "scheduler": "sampler",
                   "schedule_type": "schedule", "denoising_strength": "strength", "mask_image": "mask",
                   "hires_denoising_strength": "hires_denoise", "hires_upscale": "hires_scale"}
        fixed = {}
        for key, value in fields.items():
            key = aliases.get(key, key)
            if key not in names:
                raise InputError(f"unknown generation option {key!r}: use one of {', '.join(sorted(names))}")
            fixed[key] = value
        if request is None:
            return cls(**fixed)
        if not isinstance(request, GenerationRequest):
            raise InputError(f"generate() takes a GenerationRequest or keyword fields, not {type(request).__name__}")
        return dataclasses.replace(request, **fixed)

    def validate(self) -> "GenerationRequest":
        """Check every field; return a normalised copy (numbers as numbers, LoRAs as LoraSpec) or raise InputError."""
        if not isinstance(self.prompt, str):
            raise InputError("prompt must be text")
        if not isinstance(self.negative_prompt, str):
            raise InputError("negative prompt must be text")
        if self.model is None or (isinstance(self.model, str) and not self.model.strip()):
            raise InputError("no model chosen: pass model= a checkpoint name, file, diffusers folder or HF repo id")
        steps = None if self.steps is None else checked_int("steps", self.steps, 1, MAX_STEPS)
        cfg = None if self.cfg is None else checked_float("CFG scale", self.cfg, 0.0, 50.0)
        width = None if self.width is None else _side("width", self.width)
        height = None if self.height is None else _side("height", self.height)
        seed = checked_int("seed", self.seed, -1, MAX_SEED)
        batch_size = checked_int("batch size", self.batch_size, 1, 64)
        batch_count = checked_int("batch count", self.batch_count, 1, 1000)
        clip_skip = checked_int("clip skip", self.clip_skip, 1, 12)
        strength = checked_float("strength", self.strength, 0.0, 1.0)
        if self.init_image is not None and strength <= 0:
            raise InputError("strength must be above 0 for img2img (0.3 keeps the picture, 0.8 repaints most of it)")
        preview_every = checked_int("preview_every", self.preview_every, 0, MAX_STEPS)
        # names only: whether the sampler can follow the schedule matters for SD models, not for the newer families
        # (their own flow-matching scheduler ignores both); generate() checks the pair once the model is known
        resolve_sampler(self.sampler, self.schedule, pair=False)  # raises with the list of valid names
        if self.prediction not in (None, "", "epsilon", "v_prediction", "v"):
            raise InputError(f"unknown prediction type {self.prediction!r}: use epsilon or v_prediction")
        if self.dtype not in (None, "", "fp16", "float16", "bf16", "bfloat16", "fp32", "float32"):
            raise InputError(f"unknown dtype {self.dtype!r}: use fp16, bf16 or fp32")
        if self.device not in (None, "") and not str(self.device).startswith(("cuda", "cpu", "mps")):
            raise InputError(f"unknown device {self.device!r}: use cuda, cpu or mps")
        from .memory_plan import PLACEMENTS, TE_PRECISIONS

        if self.placement not in (None, "") and self.placement not in PLACEMENTS[:3]:
            raise InputError(f"unknown placement {self.placement!r}: use one of {', '.join(PLACEMENTS[:3])}")
        if self.text_encoder_precision not in (None, "") and self.text_encoder_precision not in TE_PRECISIONS:
            raise InputError(f"unknown text encoder precision {self.text_encoder_precision!r}: use "
                             f"{', '.join(TE_PRECISIONS)}")
        loras = self.loras
        if isinstance(loras, (str, tuple, LoraSpec, dict)):
            loras = [loras]
        specs = [LoraSpec.parse(x) for x in (loras or [])]
        for spec in specs:
            if not spec.name:
                raise InputError("a LoRA without a name: write it like name:0.8")
        embeddings = [self.embeddings] if isinstance(self.embeddings, str) else list(self.embeddings or [])
        if self.init_image is not None and isinstance(self.init_image, (str, os.PathLike)):
            if not os.path.isfile(self.init_image):
                raise InputError(f"init image not found: {self.init_image}")
        if self.mask is not None and isinstance(self.mask, (str, os.PathLike)) and not os.path.isfile(self.mask):
            raise InputError(f"mask not found: {self.mask}")
        mask_blur = checked_int("mask blur", self.mask_blur, 0, 64)
        inpaint_padding = checked_int("masked area padding", self.inpaint_padding, 0, 1024)
        if self.save and self.outputs_dir:
            _check_folder(self.outputs_dir)
        prediction = "v_prediction" if self.prediction == "v" else (self.prediction or None)
        return dataclasses.replace(self, steps=steps, cfg=cfg, width=width, height=height, seed=seed,
                                   batch_size=batch_size, batch_count=batch_count, clip_skip=clip_skip,
                                   strength=strength, preview_every=preview_every, loras=specs,
                                   mask_blur=mask_blur, inpaint_padding=inpaint_padding,
                                   embeddings=embeddings, prediction=prediction)


def _check_folder(folder) -> None:
    """The outputs folder, or the nearest folder above it that exists, must be a folder: checked before a model
    loads, not when the first image is saved."""
    path = os.path.abspath(os.path.expanduser(str(folder)))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise InputError(f"outputs folder {folder} cannot be made: {path} is a file, not a folder")


def checked_int(label: str, value, low: int, high: int) -> int:
    """`value` as a whole number in [low, high], or an InputError naming `label` (bools and 2.5 refused)."""
    if isinstance(value, bool):
        raise InputError(f"{label} must be a whole number, not {value!r}")
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
        if isinstance(value, str):
            number = int(value.strip())
    except (TypeError, ValueError):
        raise InputError(f"{label} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise InputError(f"{label} must be between {low} and {high}, not {number}")
    return number


def checked_float(label: str, value, low: float, high: float) -> float:
    """`value` as a number in [low, high], or an InputError naming `label`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be a number, not {value!r}") from None
    if not low <= number <= high:
        raise InputError(f"{label} must be between {low:g} and {high:g}, not {number:g}")
    return number


def _side(label: str, value) -> int:
    number = checked_int(label, value, 1, MAX_SIDE)
    if number % 8:
        # only sizes that pass both checks are offered (for 50: 64, not 56, which is below 64 too)
        lower, upper = max(number // 8 * 8, 64), max(number // 8 * 8 + 8, 64)
        hint = f"{lower} or {upper}" if lower != upper else f"{lower}"
        raise InputError(f"{label} {number} is not a multiple of 8: use {hint}")
    if number < 64:
        raise InputError(f"{label} must be at least 64, not {number}")
    return number
