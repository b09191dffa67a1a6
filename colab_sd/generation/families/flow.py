"""Transformer (flow-matching) families: Z-Image, Flux.1, Chroma, SD3.x, Flux.2 Klein, and the ones refused.

Facts from the families reference (§7: diffusers pipeline defaults, ComfyUI shifts, T4 verdicts; §3/§4: sizes).
The component sources are public, ungated Hugging Face files (the official BFL / Stability repos are gated):
Comfy-Org's split files and comfyanonymous/flux_text_encoders, both in the key layout transformers loads.
"""
from __future__ import annotations

from dataclasses import replace

from .base import GB, Component, Family

_FLUX_SIZES = ((1024, 1024), (896, 1152), (1152, 896), (832, 1216), (1216, 832), (768, 1344), (1344, 768))

QWEN3_4B = Component("text_encoder", "text_encoder", "qwen3", "Qwen3Model", "Comfy-Org/z_image_turbo",
                     "split_files/text_encoders/qwen_3_4b.safetensors", int(8.04 * GB), 4.02,
                     "Qwen3-4B text encoder (bf16)")
FLUX_VAE = Component("vae", "vae", "vae-kl16", "AutoencoderKL", "Comfy-Org/z_image_turbo", "split_files/vae/ae.safetensors",
                     int(0.335 * GB), 0.084, "Flux VAE (fp32)", hints=("flux", "ae.", "z_image", "zimage"))
CLIP_L = Component("text_encoder", "text_encoder", "clip-l", "CLIPTextModel", "comfyanonymous/flux_text_encoders",
                   "clip_l.safetensors", int(0.246 * GB), 0.123, "CLIP-L text encoder (fp16)")
T5_XXL = Component("text_encoder_2", "text_encoder", "t5-xxl", "T5EncoderModel", "comfyanonymous/flux_text_encoders",
                   "t5xxl_fp8_e4m3fn.safetensors", int(4.89 * GB), 4.76, "T5-XXL text encoder (fp8, upcast on load)")
SD3_CLIP_L = Component("text_encoder", "text_encoder", "clip-l", "CLIPTextModelWithProjection",
                       "Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/clip_l.safetensors", int(0.246 * GB), 0.123,
                       "CLIP-L text encoder (fp16)")
SD3_CLIP_G = Component("text_encoder_2", "text_encoder", "clip-g", "CLIPTextModelWithProjection",
                       "Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/clip_g.safetensors", int(1.39 * GB), 0.695,
                       "CLIP-G text encoder (fp16)")
SD3_T5 = Component("text_encoder_3", "text_encoder", "t5-xxl", "T5EncoderModel", "Comfy-Org/stable-diffusion-3.5-fp8",
                   "text_encoders/t5xxl_fp8_e4m3fn.safetensors", int(4.89 * GB), 4.76,
                   "T5-XXL text encoder (fp8, upcast on load)")
# No ungated standalone SD3 VAE is known: the library's own (vae/) or an "incl_clips" bundle is needed.
SD3_VAE = Component("vae", "vae", "vae-kl16", "AutoencoderKL", "", "", int(0.168 * GB), 0.084, "SD3 VAE",
                    hints=("sd3", "sd35", "sd3.5", "stable-diffusion-3"))
KLEIN_QWEN3_4B = Component("text_encoder", "text_encoder", "qwen3", "Qwen3ForCausalLM", QWEN3_4B.repo, QWEN3_4B.file,
                           QWEN3_4B.size, QWEN3_4B.params, QWEN3_4B.label)
FLUX2_VAE = Component("vae", "vae", "vae-flux2", "AutoencoderKLFlux2", "black-forest-labs/FLUX.2-klein-4B",
                      "vae/diffusion_pytorch_model.safetensors", int(0.168 * GB), 0.084, "Flux.2 VAE")

ZIMAGE = Family(
    id="zimage", variant_label="Turbo", pipeline="ZImagePipeline", img2img="ZImageImg2ImgPipeline",
    transformer="ZImageTransformer2DModel", components=(QWEN3_4B, FLUX_VAE), tokenizers=("tokenizer",),
    config="zimage", single_file_pipeline=True, steps=9, cfg=0.0, guidance="none", negative=False, sampler="flow",
    shift=3.0, size=1024, sizes=_FLUX_SIZES, max_sequence_length=512, params=6.15, fp16="guard", vae_fp32=True,
    lora="ZImageLoraLoaderMixin (diffusion_model., kohya/musubi lora_unet_)", civitai=("ZImageTurbo",),
    variants={"turbo": {"variant_label": "Turbo"},
              "base": {"variant_label": "Base", "steps": 28, "cfg": 4.0, "guidance": "cfg", "negative": True,
                       "shift": 6.0, "civitai": ("ZImageBase",)}})

FLUX = Family(
    id="flux", variant_label="dev", pipeline="FluxPipeline", img2img="FluxImg2ImgPipeline",
    transformer="FluxTransformer2DModel", components=(CLIP_L, T5_XXL, FLUX_VAE), tokenizers=("tokenizer", "tokenizer_2"),
    config="flux-dev", single_file_pipeline=True, steps=28, cfg=3.5, guidance="distilled", negative=False,
    sampler="flow", shift=None, size=1024, sizes=_FLUX_SIZES, max_sequence_length=512, params=11.9, fp16="clamped",
    vae_fp32=True, lora="FluxLoraLoaderMixin (kohya, XLabs, ai-toolkit, diffusers)",
    civitai=("Flux.1 D",),
    variants={"dev": {"variant_label": "dev"},
              "krea": {"variant_label": "Krea dev", "cfg": 4.5, "civitai": ("Flux.1 Krea",)},
              "kontext": {"variant_label": "Kontext dev", "pipeline": "FluxKontextPipeline", "img2img": None,
                          "cfg": 2.5, "civitai": ("Flux.1 Kontext",)},
              "schnell": {"variant_label": "schnell", "config": "flux-schnell", "steps": 4, "cfg": 0.0,
                          "guidance": "none", "shift": 1.0, "max_sequence_length": 256, "civitai": ("Flux.1 S",)},
              "inpaint": {"variant_label": "Fill", "supported": False, "fp16": "no"},
              "depth": {"variant_label": "Depth / Canny", "supported": False}})

CHROMA = Family(
    id="chroma", pipeline="ChromaPipeline", img2img="ChromaImg2ImgPipeline",
    transformer="ChromaTransformer2DModel", components=(replace(T5_XXL, role="text_encoder"), FLUX_VAE),
    tokenizers=("tokenizer",), config="chroma", single_file_pipeline=True, steps=35, cfg=5.0, guidance="cfg",
    negative=True, sampler="flow", shift=None, size=1024, sizes=_FLUX_SIZES, max_sequence_length=512, params=8.9,
    fp16="clamped", vae_fp32=True, lora="FluxLoraLoaderMixin (Flux layouts)", civitai=("Chroma",))

SD3 = Family(
    id="sd3", variant_label="Medium", pipeline="StableDiffusion3Pipeline",
    img2img="StableDiffusion3Img2ImgPipeline", transformer="SD3Transformer2DModel",
    components=(SD3_CLIP_L, SD3_CLIP_G, SD3_T5, SD3_VAE), tokenizers=("tokenizer", "tokenizer_2", "tokenizer_3"),
    config="sd3-medium", single_file_pipeline=True, steps=28, cfg=7.0, guidance="cfg", negative=True, sampler="flow",
    shift=3.0, size=1024, sizes=_FLUX_SIZES, max_sequence_length=256, params=2.0, fp16="ok", vae_fp32=True,
    lora="SD3LoraLoaderMixin (diffusers / peft only)", civitai=("SD 3",),
    variants={"medium": {"variant_label": "Medium"},
              "3.5-medium": {"label": "SD3.5", "variant_label": "Medium", "config": "sd3.5-medium", "params": 2.5,
                             "steps": 40, "cfg": 4.5, "civitai": ("SD 3.5 Medium",)},
              "3.5-large": {"label": "SD3.5", "variant_label": "Large", "config": "sd3.5-large", "params": 8.1,
                            "steps": 28, "cfg": 4.5, "civitai": ("SD 3.5", "SD 3.5 Large")},
              "3.5-large-turbo": {"label": "SD3.5", "variant_label": "Large Turbo", "config": "sd3.5-large",
                                  "params": 8.1, "steps": 4, "cfg": 0.0, "guidance": "none", "negative": False,
                                  "civitai": ("SD 3.5 Large Turbo",)}})

FLUX2 = Family(
    id="flux2", variant_label="Klein 4B", pipeline="Flux2KleinPipeline", img2img=None,
    transformer="Flux2Transformer2DModel", components=(KLEIN_QWEN3_4B, FLUX2_VAE), tokenizers=("tokenizer",),
    config="flux2-klein-4b", single_file_pipeline=False, steps=4, cfg=1.0, guidance="none", negative=False,
    sampler="flow", shift=None, size=1024, sizes=_FLUX_SIZES, max_sequence_length=512, params=3.9, fp16="clamped",
    vae_fp32=True, lora="Flux2LoraLoaderMixin (kohya, peft, diffusion_model.)", civitai=("Flux.2 Klein 4B",),
    variants={"klein-4b": {"variant_label": "Klein 4B"},
              "klein-4b-base": {"variant_label": "Klein 4B Base", "steps": 50, "cfg": 4.0, "guidance": "cfg",
                                "civitai": ("Flux.2 Klein 4B Base",)},
              "klein-9b": {"variant_label": "Klein 9B", "params": 9.1, "supported": False,
                           "components": (replace(KLEIN_QWEN3_4B, params=8.2, size=int(16.4 * GB),
                                                  label="Qwen3-8B text encoder (bf16)"), FLUX2_VAE),
                           "civitai": ("Flux.2 Klein 9B",)},
              "dev": {"variant_label": "dev", "pipeline": "Flux2Pipeline", "params": 32.0, "supported": False,
                      "steps": 50, "cfg": 4.0, "guidance": "distilled",
                      "components": (replace(KLEIN_QWEN3_4B, params=24.0, size=int(48 * GB),
                                             label="Mistral-Small 24B text encoder (bf16)"), FLUX2_VAE),
                      "civitai": ("Flux.2 D",)}})

QWEN_IMAGE = Family(
    id="qwen-image", pipeline="QwenImagePipeline", transformer="QwenImageTransformer2DModel",
    components=(replace(QWEN3_4B, cls="Qwen2_5_VLForConditionalGeneration", params=8.3, size=int(16.6 * GB),
                        label="Qwen2.5-VL-7B text encoder (bf16)"),), steps=50, cfg=4.0, guidance="cfg",
    sampler="flow", size=1328, params=20.4, fp16="no", vae_fp32=False, supported=False, civitai=("Qwen",))

HIDREAM = Family(
    id="hidream", pipeline="HiDreamImagePipeline", transformer="HiDreamImageTransformer2DModel",
    components=(replace(T5_XXL, role="text_encoder_3"),
                replace(QWEN3_4B, role="text_encoder_4", cls="LlamaForCausalLM", params=8.0, size=int(16.1 * GB),
                        label="Llama-3.1-8B text encoder (bf16)")),
    steps=50, cfg=5.0, guidance="cfg", sampler="flow", size=1024, params=17.1, fp16="no", supported=False,
    civitai=("HiDream",))

ENTRIES = (ZIMAGE, FLUX, CHROMA, SD3, FLUX2, QWEN_IMAGE, HIDREAM)
