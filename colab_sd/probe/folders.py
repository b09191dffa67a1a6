"""Diffusers folders: a pipeline (`model_index.json`) or a single component (`config.json`)."""
from __future__ import annotations

import json
from pathlib import Path

from .dit import folder_variant
from .keys import Verdict, width_family
from .result import FAMILY_NAMES, Probe, unknown

_PIPELINE_FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl", "StableDiffusionXLInstructPix2PixPipeline": "sdxl",
    "StableDiffusionXLControlNetPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux", "FluxFillPipeline": "flux", "FluxInpaintPipeline": "flux",
    "ChromaPipeline": "chroma",
    "PixArtAlphaPipeline": "pixart", "PixArtSigmaPipeline": "pixart", "SanaPipeline": "sana",
    "HunyuanDiTPipeline": "hunyuan", "AuraFlowPipeline": "auraflow", "KolorsPipeline": "kolors",
    "StableCascadeCombinedPipeline": "sd-cascade", "StableCascadePriorPipeline": "sd-cascade",
    "StableCascadeDecoderPipeline": "sd-cascade", "LuminaText2ImgPipeline": "lumina", "Lumina2Pipeline": "lumina",
    "ZImagePipeline": "zimage", "ZImageImg2ImgPipeline": "zimage", "FluxKontextPipeline": "flux",
    "Flux2KleinPipeline": "flux2", "Flux2Pipeline": "flux2", "QwenImagePipeline": "qwen-image",
    "HiDreamImagePipeline": "hidream",
}
_COMPONENT_KINDS = {
    "AutoencoderKL": "vae", "AutoencoderTiny": "vae", "ConsistencyDecoderVAE": "vae",
    "ControlNetModel": "controlnet", "ControlNetUnionModel": "controlnet", "ControlNetXSAdapter": "controlnet",
    "FluxControlNetModel": "controlnet", "SD3ControlNetModel": "controlnet",
}


def read_json(path: Path) -> dict:
    """A JSON object from a config file, or {} when it is missing or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def inspect_folder(folder: Path) -> Probe:
    """A diffusers pipeline folder is a checkpoint; a component folder is what its class is."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        config = read_json(folder / "config.json")
        cls = config.get("_class_name")
        if cls:
            return _inspect_component(cls, config)
        return unknown("unknown", "a folder without model_index.json (not a diffusers pipeline)")
    index = read_json(index_path)
    cls = str(index.get("_class_name") or "")
    if not cls:
        return unknown("diffusers", "model_index.json has no _class_name")
    verdict = Verdict("checkpoint").why(f"a diffusers folder: model_index.json names {cls}")
    unet = read_json(folder / "unet" / "config.json")
    verdict.family, why = _pipeline_family(cls, index, unet, folder)
    verdict.why(why)
    in_channels = unet.get("in_channels")
    if in_channels == 9 or "Inpaint" in cls or "Fill" in cls:
        verdict.variant = "inpaint"
        verdict.why("inpainting pipeline (9-channel UNet or Inpaint/Fill class)")
    elif in_channels == 8 or "InstructPix2Pix" in cls:
        verdict.variant = "instruct-pix2pix"
        verdict.why("InstructPix2Pix (8-channel UNet)")
    if verdict.family in ("flux", "flux2", "sd3") and verdict.variant is None:
        verdict.variant, why = folder_variant(verdict.family, cls, read_json(folder / "transformer" / "config.json"))
        if why:
            verdict.why(why)
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json")
    if scheduler.get("prediction_type") == "v_prediction" and verdict.variant is None:
        verdict.variant = "v-prediction"
        verdict.why("scheduler prediction_type is v_prediction")
    return verdict.probe("diffusers")


def _pipeline_family(cls: str, index: dict, unet: dict, folder: Path) -> tuple:
    """(family or None, the reason) for a pipeline class and its configs."""
    family = _PIPELINE_FAMILIES.get(cls)
    only_bigg = not _component_present(index, "text_encoder") and _component_present(index, "text_encoder_2")
    if family == "sdxl" and only_bigg:
        return "sdxl-refiner", "text_encoder_2 only (no CLIP-L) → SDXL refiner"
    if family:
        return family, f"{cls} → {FAMILY_NAMES[family]}"
    if cls.startswith(("StableDiffusion", "LatentConsistencyModel")):
        # SD1 and SD2 share the pipeline class: the UNet's context width (= text encoder width) tells them apart
        width = unet.get("cross_attention_dim")
        if isinstance(width, list):
            width = width[0] if width else None
        if width is None:
            width = read_json(folder / "text_encoder" / "config.json").get("hidden_size")
        family = {768: "sd1", 1024: "sd2"}.get(width)
        if family:
            return family, f"cross_attention_dim / text encoder width {width} → {FAMILY_NAMES[family]}"
        if cls in ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"):
            # The class decides what loads it: a pruned, distilled or test-size model of another width is still
            # an SD1-style pipeline (SD2's own widths are 1024).
            return "sd1", f"{cls} with a {width}-wide text encoder → {FAMILY_NAMES['sd1']} pipeline"
    for word, family in (("XL", "sdxl"), ("StableDiffusion3", "sd3"), ("Flux", "flux"), ("PixArt", "pixart"),
                         ("Cascade", "sd-cascade"), ("Hunyuan", "hunyuan"), ("AuraFlow", "auraflow")):
        if word in cls:
            return family, f"{cls} names {FAMILY_NAMES[family]}"
    return None, "pipeline class not known: family undecided"


def _component_present(index: dict, name: str) -> bool:
    value = index.get(name)
    return isinstance(value, list) and len(value) == 2 and value[0] is not None and value[1] is not None


def _inspect_component(cls: str, config: dict) -> Probe:
    kind = _COMPONENT_KINDS.get(cls, "other")
    verdict = Verdict(kind).why(f"a diffusers component folder: config.json names {cls} → {kind}")
    if kind == "controlnet":
        if cls.startswith("Flux"):
            verdict.family = "flux"
        elif cls.startswith("SD3"):
            verdict.family = "sd3"
        elif config.get("addition_embed_type") == "text_time":
            verdict.family = "sdxl"
        else:
            verdict.family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(config.get("cross_attention_dim"))
        if verdict.family:
            verdict.why(f"its config → {FAMILY_NAMES[verdict.family]}")
    elif kind == "vae":
        verdict.why("family undecidable from a VAE config")
    elif cls == "UNet2DConditionModel":
        verdict.family = width_family(config.get("cross_attention_dim"))
        verdict.why("a UNet alone, not a whole pipeline")
    return verdict.probe("diffusers")
