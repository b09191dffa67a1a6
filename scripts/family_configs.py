"""Write the bundled config folders of the transformer families (json only) under colab_sd/generation/configs/.

    python scripts/family_configs.py

The official repos are gated, so colab_sd ships the configs: each folder is what `from_pretrained(folder,
transformer=…, text_encoder=…, vae=…)` reads besides the weights (model_index.json, the scheduler, every component's
config.json, tokenizer_config.json). The released shapes come from the families reference (§2, §7) and the
diffusers / transformers class defaults that mirror them; the configs are written by the classes themselves
(`save_config` / `save_pretrained` on the meta device), so the keys are the ones the installed versions read.
The tokenizer vocabularies are not here: they are fetched once from public repos (families.load.TOKENIZERS).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "colab_sd" / "generation" / "configs"

QWEN3_4B = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643,
                eos_token_id=151645)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128,
              layer_norm_epsilon=1e-6, is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=49406,
              eos_token_id=49407, pad_token_id=49407)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              max_position_embeddings=77, hidden_act="gelu", projection_dim=1280, bos_token_id=49406,
              eos_token_id=49407, pad_token_id=49407)
KL16 = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
            latent_channels=16, norm_num_groups=32, sample_size=1024, use_quant_conv=False, use_post_quant_conv=False,
            force_upcast=True)
FLUX_VAE = dict(KL16, scaling_factor=0.3611, shift_factor=0.1159)
SD3_VAE = dict(KL16, scaling_factor=1.5305, shift_factor=0.0609)
DYNAMIC = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
               use_dynamic_shifting=True)
FLUX_T = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
              num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=[16, 56, 56])
SD3_T = dict(sample_size=128, patch_size=2, in_channels=16, attention_head_dim=64, joint_attention_dim=4096,
             pooled_projection_dim=2048, out_channels=16)

CLIP_TOK = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "do_lower_case": True}
CLIP_G_TOK = dict(CLIP_TOK, pad_token="!")
T5_TOK = {"tokenizer_class": "T5Tokenizer", "model_max_length": 512, "eos_token": "</s>", "pad_token": "<pad>",
          "unk_token": "<unk>", "extra_ids": 100}
QWEN_TOK = {"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 131072, "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>", "unk_token": None, "bos_token": None}

# folder → (pipeline class, {component: (library, class, config)}, pipeline config extras)
FOLDERS = {
    "zimage": ("ZImagePipeline", {
        "transformer": ("diffusers", "ZImageTransformer2DModel", {}),
        "text_encoder": ("transformers", "Qwen3Model", QWEN3_4B),
        "vae": ("diffusers", "AutoencoderKL", FLUX_VAE),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", dict(shift=3.0, use_dynamic_shifting=False)),
        "tokenizer": ("transformers", "Qwen2Tokenizer", QWEN_TOK)}, {}),
    "flux-dev": ("FluxPipeline", {
        "transformer": ("diffusers", "FluxTransformer2DModel", dict(FLUX_T, guidance_embeds=True)),
        "text_encoder": ("transformers", "CLIPTextModel", CLIP_L),
        "text_encoder_2": ("transformers", "T5EncoderModel", T5_XXL),
        "vae": ("diffusers", "AutoencoderKL", FLUX_VAE),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", DYNAMIC),
        "tokenizer": ("transformers", "CLIPTokenizer", CLIP_TOK),
        "tokenizer_2": ("transformers", "T5TokenizerFast", T5_TOK)}, {}),
    "chroma": ("ChromaPipeline", {
        "transformer": ("diffusers", "ChromaTransformer2DModel", {}),
        "text_encoder": ("transformers", "T5EncoderModel", T5_XXL),
        "vae": ("diffusers", "AutoencoderKL", FLUX_VAE),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", DYNAMIC),
        "tokenizer": ("transformers", "T5TokenizerFast", T5_TOK)}, {}),
    "sd3-medium": ("StableDiffusion3Pipeline", {
        "transformer": ("diffusers", "SD3Transformer2DModel",
                        dict(SD3_T, num_layers=24, num_attention_heads=24, caption_projection_dim=1536,
                             pos_embed_max_size=192)),
        "text_encoder": ("transformers", "CLIPTextModelWithProjection", CLIP_L),
        "text_encoder_2": ("transformers", "CLIPTextModelWithProjection", CLIP_G),
        "text_encoder_3": ("transformers", "T5EncoderModel", T5_XXL),
        "vae": ("diffusers", "AutoencoderKL", SD3_VAE),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
        "tokenizer": ("transformers", "CLIPTokenizer", CLIP_TOK),
        "tokenizer_2": ("transformers", "CLIPTokenizer", CLIP_G_TOK),
        "tokenizer_3": ("transformers", "T5TokenizerFast", T5_TOK)}, {}),
    "flux2-klein-4b": ("Flux2KleinPipeline", {
        "transformer": ("diffusers", "Flux2Transformer2DModel",
                        dict(patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
                             num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256,
                             mlp_ratio=3.0, axes_dims_rope=[32, 32, 32, 32], rope_theta=2000, guidance_embeds=False)),
        "text_encoder": ("transformers", "Qwen3ForCausalLM", QWEN3_4B),
        "vae": ("diffusers", "AutoencoderKLFlux2", {}),
        "scheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler", DYNAMIC),
        "tokenizer": ("transformers", "Qwen2TokenizerFast", QWEN_TOK)}, {"is_distilled": True}),
}


def variants() -> dict:
    """Folders that differ from another by a few fields."""
    out = dict(FOLDERS)
    pipe, comps, extra = FOLDERS["flux-dev"]
    out["flux-schnell"] = (pipe, dict(comps, transformer=("diffusers", "FluxTransformer2DModel",
                                                          dict(FLUX_T, guidance_embeds=False)),
                                      scheduler=("diffusers", "FlowMatchEulerDiscreteScheduler",
                                                 dict(shift=1.0, use_dynamic_shifting=False))), extra)
    pipe, comps, extra = FOLDERS["sd3-medium"]
    out["sd3.5-medium"] = (pipe, dict(comps, transformer=("diffusers", "SD3Transformer2DModel", dict(
        SD3_T, num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=384,
        qk_norm="rms_norm", dual_attention_layers=list(range(13))))), extra)
    out["sd3.5-large"] = (pipe, dict(comps, transformer=("diffusers", "SD3Transformer2DModel", dict(
        SD3_T, num_layers=38, num_attention_heads=38, caption_projection_dim=2432, pos_embed_max_size=192,
        qk_norm="rms_norm"))), extra)
    return out


def write(name: str, pipeline: str, comps: dict, extra: dict) -> None:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    index = {"_class_name": pipeline, **extra}
    for role, (lib, cls, config) in comps.items():
        index[role] = [lib, cls]
        sub = folder / role
        sub.mkdir(parents=True)
        if role.startswith("tokenizer"):
            (sub / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        elif lib == "diffusers" and role == "scheduler":
            getattr(diffusers, cls)(**config).save_config(str(sub))
        elif lib == "diffusers":
            with init_empty_weights():
                getattr(diffusers, cls)(**config).save_config(str(sub))
        else:
            config_cls = getattr(transformers, cls).config_class
            cfg = config_cls(**config)
            cfg.architectures = [cls]
            cfg.save_pretrained(str(sub))
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    print("wrote", folder)


def main() -> None:
    for name, (pipeline, comps, extra) in variants().items():
        write(name, pipeline, comps, extra)


if __name__ == "__main__":
    main()
