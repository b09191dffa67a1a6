"""The answer a probe gives: `Probe`, and the display names of families and kinds."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from ..library import KIND_LABELS

FORMATS = ("safetensors", "pickle", "gguf", "diffusers", "unknown")

# The one table of family labels: the probe's messages, sidecars' base_model, `colab-sd models` and the families
# registry (generation/families: `Family.label` comes from here) all say the same words.
FAMILY_NAMES = {
    "sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner", "sd3": "SD3", "flux": "Flux",
    "chroma": "Chroma", "pixart": "PixArt", "sana": "Sana", "hunyuan": "Hunyuan-DiT", "hunyuan-video": "HunyuanVideo",
    "auraflow": "AuraFlow", "sd-cascade": "Stable Cascade", "kolors": "Kolors", "lumina": "Lumina",
    "zimage": "Z-Image", "flux2": "Flux.2", "qwen-image": "Qwen-Image", "hidream": "HiDream-I1",
}


KIND_NAMES = KIND_LABELS  # the library's words for its kinds


@dataclass(frozen=True)
class Probe:
    """What a model file is, and why we think so.

    kind: a library folder name (`colab_sd.library.KINDS`), or None when the file is not recognised.
    family: the base model family ("sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux", …; see FAMILY_NAMES) or None.
    variant: for checkpoints "inpaint", "instruct-pix2pix", "v-prediction", "edm-v-prediction", "playground-v2.5",
        "schnell" / "depth" (Flux), "stage-b" / "stage-c" (Stable Cascade); for LoRAs the LyCORIS algorithm when it
        is not plain LoRA/LoCon ("loha", "lokr", "oft", "dora", "ia3", "full", "glora"); else None.
    format: "safetensors", "pickle", "gguf", "diffusers" or "unknown".
    reasons: short sentences, in order, saying how the file was read and why this kind / family.
    metadata: the safetensors "__metadata__" (GGUF: its string key/values); {} when there is none.
    """

    kind: Optional[str]
    family: Optional[str]
    variant: Optional[str]
    format: str
    reasons: tuple = ()
    metadata: dict = field(default_factory=dict, hash=False)

    @property
    def summary(self) -> str:
        """One line, e.g. "SDXL checkpoint (safetensors)" or "unknown file (pickle)"."""
        words = []
        if self.family:
            words.append(FAMILY_NAMES.get(self.family, self.family))
        if self.variant:
            words.append(self.variant)
        words.append(KIND_NAMES.get(self.kind, "unknown file"))
        return f"{' '.join(words)} ({self.format})"

    def with_reasons(self, before: tuple = (), after: tuple = ()) -> "Probe":
        """The same answer with reasons added around the classifier's (how the file was read, warnings)."""
        return replace(self, reasons=tuple(before) + self.reasons + tuple(after))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "family": self.family, "variant": self.variant, "format": self.format,
                "reasons": list(self.reasons), "metadata": dict(self.metadata), "summary": self.summary}


def unknown(fmt: str, *reasons: str) -> Probe:
    """A Probe that could not tell what the file is, saying why."""
    return Probe(None, None, None, fmt, tuple(reasons), {})
