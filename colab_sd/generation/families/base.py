"""What a model family is, as data: `Family` and `Component`. No torch here (the panel and the CLI read it).

One `Family` per probe verdict (`colab_sd.probe` family id, e.g. "zimage", "flux"); variants that change
defaults or sizes (Flux schnell, SD3.5 Large, Klein base…) are `Family.variants` overrides applied by
`Family.for_variant`. Facts (classes, defaults, sizes, ungated sources) come from the families reference
(diffusers `__call__` defaults, ComfyUI / InvokeAI model tables); sizes are bytes of the released files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ...probe.result import FAMILY_NAMES

GB = 1_000_000_000


@dataclass(frozen=True)
class Component:
    """A part a transformer-only file lacks, and the ungated file it can come from.

    role: the pipeline's argument ("text_encoder", "text_encoder_2", "text_encoder_3", "vae").
    kind: the library folder it lives in ("text_encoder" or "vae").
    arch: what the probe calls it ("qwen3", "t5-xxl", "clip-l", "clip-g", "vae-kl16", "vae-flux2").
    cls: the transformers / diffusers class that loads it ("Qwen3Model", "T5EncoderModel", "AutoencoderKL"…).
    repo, file: where it is fetched from when the library has none (a public, ungated Hugging Face repo).
    size: that file's size in bytes (shown before fetching; used by the memory plan).
    params: parameters in billions (for the memory plan at another precision).
    """

    role: str
    kind: str
    arch: str
    cls: str
    repo: str
    file: str
    size: int
    params: float
    label: str
    hints: tuple = ()  # words in a library file's name that make it this component (the VAEs share shapes)

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/main/{self.file}"


@dataclass(frozen=True)
class Family:
    """One generatable (or knowingly refused) model family.

    Text-to-image settings are diffusers' defaults for the family's pipeline; `guidance` says what the CFG
    number means: "cfg" (two passes, negative prompt used), "distilled" (fed to the model as an input, one
    pass, no negative prompt) or "none" (ignored: turbo / schnell). `sampler` "sd" means the A1111 sampler
    list applies; "flow" means the family's own flow-matching Euler scheduler with `shift`.
    """

    id: str
    pipeline: str  # diffusers text-to-image pipeline class name
    label: str = field(default="", kw_only=True)  # "" = the probe's label for `id` (one table: FAMILY_NAMES)
    img2img: Optional[str] = None  # diffusers image-to-image class name, None when colab_sd offers none
    transformer: Optional[str] = None  # denoiser class for transformer-only files; None for UNet families
    components: tuple = ()  # Component: what a transformer-only file lacks
    tokenizers: tuple = ()  # pipeline arguments that are tokenizers (from the config folder)
    config: str = ""  # bundled config folder name under generation/configs/
    single_file_pipeline: bool = False  # diffusers has Pipeline.from_single_file for whole bundles
    # defaults
    steps: int = 25
    cfg: float = 7.0
    guidance: str = "cfg"  # "cfg", "distilled", "none"
    negative: bool = True
    sampler: str = "sd"  # "sd" (A1111 sampler list) or "flow" (flow-matching Euler, family shift)
    shift: Optional[float] = None
    size: int = 512
    sizes: tuple = ()  # (width, height) presets
    max_sequence_length: Optional[int] = None
    clip_skip: bool = False  # the panel offers clip skip (CLIP-only encoders)
    # memory and precision
    params: float = 0.0  # denoiser parameters, billions
    fp16: str = "ok"  # "ok", "clamped" (diffusers clamps ±65504), "guard" (colab_sd adds clamps), "no"
    vae_fp32: bool = False  # decode in fp32 on fp16 GPUs (black images otherwise)
    lora: str = ""  # which diffusers loader / converter reads its LoRAs
    civitai: tuple = ()  # CivitAI `baseModel` strings of this family
    supported: bool = True  # False: recognised and sized, but colab_sd does not load it (refused with why)
    variants: dict = field(default_factory=dict, compare=False)  # variant → field overrides
    variant: Optional[str] = None  # set by for_variant
    variant_label: str = ""

    def __post_init__(self):
        if not self.label:  # a variant may override it ("SD3.5"); the family's own is the probe's word
            object.__setattr__(self, "label", FAMILY_NAMES[self.id])

    def for_variant(self, variant: Optional[str]) -> "Family":
        """This family with a variant's overrides applied (unknown or None variant: the family as is)."""
        if not variant or variant not in self.variants:
            return self
        over = dict(self.variants[variant])
        over.setdefault("variant_label", variant)
        return dataclasses.replace(self, variant=variant, **over)

    @property
    def name(self) -> str:
        """"Flux dev", "Z-Image Turbo", "SDXL": the family label with its variant."""
        return f"{self.label} {self.variant_label}".strip() if self.variant_label else self.label

    @property
    def is_transformer(self) -> bool:
        return self.transformer is not None

    @property
    def controls(self) -> dict:
        """Which Generate-panel controls mean something for this family, and their defaults.

        Keys: steps, cfg (label and default, or None when guidance is ignored), negative_prompt (bool),
        sampler (bool: the A1111 sampler/schedule lists, the hires sampler too), clip_skip (bool), size, sizes,
        img2img (bool: img2img and hires fix, which need the family's image-to-image pipeline), inpaint (bool:
        masks, for the UNet families only).
        """
        cfg_label = {"cfg": "CFG scale", "distilled": "Guidance"}.get(self.guidance)
        return {"steps": self.steps, "cfg": (cfg_label, self.cfg) if cfg_label else None,
                "negative_prompt": self.negative, "sampler": self.sampler == "sd", "clip_skip": self.clip_skip,
                "size": self.size, "sizes": list(self.sizes) or [(self.size, self.size)],
                "img2img": self.img2img is not None, "inpaint": not self.is_transformer}

    @property
    def component_bytes(self) -> int:
        return sum(c.size for c in self.components)
