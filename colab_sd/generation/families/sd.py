"""The UNet families colab_sd started with: SD1.x, SD2.x, SDXL (A1111 samplers, CFG, negative prompts)."""
from __future__ import annotations

from .base import Family

_SD_SIZES = ((512, 512), (512, 768), (768, 512))
_XL_SIZES = ((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344), (1344, 768))

SD1 = Family(
    id="sd1", pipeline="StableDiffusionPipeline", img2img="StableDiffusionImg2ImgPipeline",
    config="sd1", single_file_pipeline=True, steps=25, cfg=7.0, guidance="cfg", negative=True, sampler="sd",
    size=512, sizes=_SD_SIZES, clip_skip=True, params=0.86, fp16="ok", lora="StableDiffusionLoraLoaderMixin",
    civitai=("SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"))

SD2 = Family(
    id="sd2", pipeline="StableDiffusionPipeline", img2img="StableDiffusionImg2ImgPipeline",
    config="sd2", single_file_pipeline=True, steps=25, cfg=7.0, guidance="cfg", negative=True, sampler="sd",
    size=768, sizes=((768, 768), (512, 512), (768, 512), (512, 768)), clip_skip=True, params=0.87, fp16="ok",
    lora="StableDiffusionLoraLoaderMixin", civitai=("SD 2.0", "SD 2.0 768", "SD 2.1", "SD 2.1 768", "SD 2.1 Unclip"))

SDXL = Family(
    id="sdxl", pipeline="StableDiffusionXLPipeline", img2img="StableDiffusionXLImg2ImgPipeline",
    config="sdxl", single_file_pipeline=True, steps=25, cfg=7.0, guidance="cfg", negative=True, sampler="sd",
    size=1024, sizes=_XL_SIZES, clip_skip=True, params=2.57, fp16="ok", vae_fp32=False,
    lora="StableDiffusionXLLoraLoaderMixin",
    civitai=("SDXL 1.0", "SDXL 0.9", "SDXL Turbo", "SDXL Lightning", "SDXL Hyper", "Pony", "Illustrious", "NoobAI"))

ENTRIES = (SD1, SD2, SDXL)
