"""Tiny random versions of the transformer families (Z-Image, Flux, Chroma, SD3, Flux.2 Klein) for offline tests.

Sizes follow diffusers' own pipeline tests (families reference §8): one or two blocks, heads of 16, text
widths of 16-32. Tokenizers are built from tiny vocabularies written to a temporary folder (byte-level BPE for
Qwen, CLIP's BPE from tiny_models, a T5 tokenizer from a tiny unigram model). For each family:

- `build_<family>()`: the real diffusers pipeline class with tiny components;
- `save_family(pipe, family, root)`: what a user has in a models folder:
    checkpoint/tiny-<family>-diffusers/           a diffusers folder
    checkpoint/tiny-<family>.safetensors          the transformer alone (original layout where the family has one
                                                  whose converter derives sizes; diffusers layout for Flux/Chroma)
    checkpoint/tiny-<family>-Q8_0.gguf            the transformer as GGUF (Q8_0 where rows allow, else F32)
    text_encoder/tiny-<arch>.safetensors          each text encoder as one file (ComfyUI's key layout)
    vae/tiny-<family>-vae.safetensors             the VAE alone
    _configs/<config>/                            the config folder (no weights) that stands in for the bundled one

Importing this module imports torch, diffusers and transformers; only tests and benchmarks use it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

import tiny_models

# ---------------------------------------------------------------------------------------------- tokenizers

QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
QWEN_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_WORDS = ("a", "photo", "of", "cat", "dog", "red", "blue", "house", "tree", "user", "assistant", "portrait")


def write_qwen_tokenizer(folder: os.PathLike | str) -> Path:
    """A loadable Qwen2Tokenizer (byte-level BPE, chat template, <|endoftext|> padding) with ~300 tokens."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(tiny_models._bytes_to_unicode().values())
    vocab_list = list(alphabet)
    merges = []
    for word in _WORDS:
        for text in (word, "Ġ" + word):
            parts = list(text)
            while len(parts) > 1:
                merged = parts[0] + parts[1]
                line = f"{parts[0]} {parts[1]}"
                if line not in merges:
                    merges.append(line)
                if merged not in vocab_list:
                    vocab_list.append(merged)
                parts = [merged] + parts[2:]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = {str(len(vocab) + i): {"content": tok, "special": True, "lstrip": False, "rstrip": False,
                                   "normalized": False, "single_word": False} for i, tok in enumerate(QWEN_SPECIAL)}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 512, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "bos_token": None, "added_tokens_decoder": added,
        "chat_template": QWEN_TEMPLATE, "errors": "replace", "clean_up_tokenization_spaces": False}), encoding="utf-8")
    return folder


QWEN_VOCAB = 400  # embedding rows of the tiny Qwen3 models (> the ~300 tokens above)


def write_clip_tokenizer(folder: os.PathLike | str) -> Path:
    return tiny_models.write_tokenizer(folder)


def write_t5_tokenizer(folder: os.PathLike | str) -> Path:
    """A T5 tokenizer (tokenizers' Unigram model in tokenizer.json) with a few words, `</s>` and `<pad>`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]] + [["▁" + w, -2.0] for w in _WORDS] + \
        [[c, -5.0] for c in "abcdefghijklmnopqrstuvwxyz▁"]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(("<pad>", "</s>", "<unk>"))],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": pieces, "byte_fallback": False},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "model_max_length": 512, "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "extra_ids": 0}), encoding="utf-8")
    return folder


def _load(writer, cls_name: str):
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        return getattr(transformers, cls_name).from_pretrained(writer(tmp))


# ---------------------------------------------------------------------------------------------- components


def tiny_qwen3(seed: int = 0, causal: bool = False):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    torch.manual_seed(seed)
    config = Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, head_dim=8, vocab_size=QWEN_VOCAB, max_position_embeddings=512,
                         tie_word_embeddings=True)
    return (Qwen3ForCausalLM if causal else Qwen3Model)(config)


def tiny_flux_vae(seed: int = 0, latent: int = 16, scaling: float = 0.3611, shift: float = 0.1159):
    """A two-level AutoencoderKL with the Flux VAE's options (16 latent channels, no quant convs)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 64], layers_per_block=1,
                         latent_channels=latent, norm_num_groups=32, sample_size=32, scaling_factor=scaling,
                         shift_factor=shift, use_quant_conv=False, use_post_quant_conv=False)


def flow_scheduler(**kw):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**kw)


# ---------------------------------------------------------------------------------------------- Z-Image


def build_zimage(seed: int = 0):
    from diffusers import ZImagePipeline, ZImageTransformer2DModel

    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])
    with torch.no_grad():  # created with torch.empty: fix them, as diffusers' tests do, or NaNs appear at random
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    return ZImagePipeline(transformer=transformer, vae=tiny_flux_vae(seed + 1), scheduler=flow_scheduler(shift=3.0),
                          text_encoder=tiny_qwen3(seed + 2), tokenizer=_load(write_qwen_tokenizer, "Qwen2Tokenizer"))


def zimage_to_original(sd: dict) -> dict:
    """diffusers ZImageTransformer2DModel keys → the released (ComfyUI) layout: fused qkv, `final_layer.`,
    `x_embedder.`, `attention.out` / `q_norm` / `k_norm`; the reverse of diffusers' single-file converter."""
    renames = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
               (".attention.to_out.0.", ".attention.out."), (".attention.norm_k.", ".attention.k_norm."),
               (".attention.norm_q.", ".attention.q_norm."))
    out, qkv = {}, {}
    for key, value in sd.items():
        m = re.match(r"(.+)\.attention\.to_([qkv])\.weight$", key)
        if m:
            qkv.setdefault(m[1], {})[m[2]] = value
            continue
        for new, old in renames:
            key = key.replace(new, old)
        out[key] = value
    for prefix, parts in qkv.items():
        out[f"{prefix}.attention.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


# ---------------------------------------------------------------------------------------------- saving


def _save(sd: dict, path: Path, dtype=torch.float32, metadata=None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(dtype).contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def save_gguf(sd: dict, path: os.PathLike | str, arch: str, quant: str = "Q8_0") -> Path:
    """A GGUF file as city96's converter writes one: `general.architecture`, tensors in their torch shapes,
    Q8_0 (or BF16) for 2-D `.weight`s whose rows fit the block size, F32 for the rest."""
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    qtype = getattr(gguf.GGMLQuantizationType, quant)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    for name, tensor in sd.items():
        data = tensor.detach().to(torch.float32).numpy()
        # only Linear weights are quantized (diffusers dequantizes in its GGUF Linear); pads, norms, biases stay F32
        if data.ndim == 2 and name.endswith(".weight") and data.shape[-1] % block == 0 and quant != "F32":
            packed = gguf.quants.quantize(data, qtype)
            writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def qwen_to_comfy(sd: dict) -> dict:
    """A Qwen3Model state dict as ComfyUI's qwen_3_4b file has it: under `model.`."""
    return {k if k.startswith(("model.", "lm_head.")) else f"model.{k}": v for k, v in sd.items()}


def save_config_folder(pipe, folder: Path) -> Path:
    return tiny_models.save_config_folder(pipe, folder)


def save_zimage(pipe, root: Path) -> dict:
    """The Z-Image artefacts of the module docstring; returns their paths by label."""
    root = Path(root)
    out = {"diffusers": tiny_models.save_diffusers(pipe, root / "checkpoint" / "tiny-zimage-diffusers")}
    original = zimage_to_original(pipe.transformer.state_dict())
    out["single"] = _save(original, root / "checkpoint" / "tiny-zimage.safetensors", torch.bfloat16)
    out["gguf"] = save_gguf(original, root / "checkpoint" / "tiny-zimage-Q8_0.gguf", "lumina2")
    out["text_encoder"] = _save(qwen_to_comfy(pipe.text_encoder.state_dict()),
                                root / "text_encoder" / "tiny-qwen3.safetensors", torch.bfloat16)
    out["vae"] = _save(tiny_models.vae_to_original(pipe.vae.state_dict(), prefix=""),
                       root / "vae" / "tiny-flux-vae.safetensors")
    out["config"] = save_config_folder(pipe, root / "_configs" / "zimage")
    return out


def copy_configs(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True)


# ---------------------------------------------------------------------------------------------- shared encoders

def tiny_clip(hidden: int = 32, projection: int = 32, seed: int = 0):
    """A CLIPTextModelWithProjection (saved with its projection, as ComfyUI's clip_l / clip_g files are)."""
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(tiny_models._text_config(hidden, projection=projection))


def as_clip_text_model(with_projection):
    """The same weights as a CLIPTextModel (what Flux uses): the projection is simply not loaded."""
    from transformers import CLIPTextModel

    model = CLIPTextModel(with_projection.config)
    model.load_state_dict(with_projection.state_dict(), strict=False)
    return model


def tiny_t5(seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2, vocab_size=1000,
                                   relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                   dense_act_fn="gelu_new", is_gated_act=True, pad_token_id=0, eos_token_id=1))


def _seeded_weights(module, seed: int):
    """Give the zero-initialised parameters (adaLN output layers, which would make every image flat) small
    seeded values; the rest keep their default initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module


# ---------------------------------------------------------------------------------------------- Flux / Chroma

def build_flux(seed: int = 0, schnell: bool = False):
    from diffusers import FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
                                         guidance_embeds=not schnell)
    _seeded_weights(transformer, seed)
    clip = tiny_clip(seed=seed + 3)
    scheduler = flow_scheduler(shift=1.0) if schnell else flow_scheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(transformer=transformer, vae=tiny_flux_vae(seed + 1), scheduler=scheduler,
                        text_encoder=as_clip_text_model(clip), tokenizer=tiny_models.load_tokenizer(),
                        text_encoder_2=tiny_t5(seed + 2), tokenizer_2=_load(write_t5_tokenizer, "T5TokenizerFast"))


def build_chroma(seed: int = 0):
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=(4, 4, 8), approximator_hidden_dim=32,
                                           approximator_layers=1, approximator_num_channels=16)
    _seeded_weights(transformer, seed)
    scheduler = flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                               max_image_seq_len=4096)
    return ChromaPipeline(transformer=transformer, vae=tiny_flux_vae(seed + 1), scheduler=scheduler,
                          text_encoder=tiny_t5(seed + 2), tokenizer=_load(write_t5_tokenizer, "T5TokenizerFast"))


# ---------------------------------------------------------------------------------------------- SD3

def build_sd3(seed: int = 0):
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=16, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64, out_channels=16)
    return StableDiffusion3Pipeline(
        transformer=transformer, vae=tiny_flux_vae(seed + 1, scaling=1.5305, shift=0.0609),
        scheduler=flow_scheduler(shift=3.0), text_encoder=tiny_clip(seed=seed + 3), tokenizer=tiny_models.load_tokenizer(),
        text_encoder_2=tiny_clip(hidden=48, projection=32, seed=seed + 4), tokenizer_2=tiny_models.load_tokenizer("!"),
        text_encoder_3=tiny_t5(seed + 2), tokenizer_3=_load(write_t5_tokenizer, "T5TokenizerFast"))


# ---------------------------------------------------------------------------------------------- Flux.2 Klein

def build_klein(seed: int = 0):
    """Klein 4B's layout: Qwen3 (causal LM) read at layers 9/18/27, so the tiny encoder keeps 28 thin layers."""
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=72,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
                                          guidance_embeds=False)
    torch.manual_seed(seed + 2)
    encoder = Qwen3ForCausalLM(Qwen3Config(hidden_size=24, intermediate_size=16, num_hidden_layers=28,
                                           num_attention_heads=2, num_key_value_heads=2, head_dim=12,
                                           vocab_size=QWEN_VOCAB, max_position_embeddings=512,
                                           tie_word_embeddings=True))
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                             up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1,
                             latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False)
    return Flux2KleinPipeline(transformer=transformer, vae=vae, scheduler=flow_scheduler(), text_encoder=encoder,
                              tokenizer=_load(write_qwen_tokenizer, "Qwen2Tokenizer"), is_distilled=True)


# ---------------------------------------------------------------------------------------------- a library

def _weights(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def save_family(pipe, name: str, config: str, root: Path, arch: str) -> dict:
    """The diffusers folder, the transformer as one diffusers-layout file and as GGUF, the config folder."""
    root = Path(root)
    out = {"diffusers": tiny_models.save_diffusers(pipe, root / "checkpoint" / f"tiny-{name}-diffusers")}
    sd = _weights(pipe.transformer)
    out["single"] = _save(sd, root / "checkpoint" / f"tiny-{name}.safetensors", torch.bfloat16)
    out["gguf"] = save_gguf(sd, root / "checkpoint" / f"tiny-{name}-Q8_0.gguf", arch)
    out["config"] = save_config_folder(pipe, root / "_configs" / config)
    return out


def offline_library(monkeypatch, root: os.PathLike | str, outputs: os.PathLike | str, home: bool = True) -> None:
    """What every family test runs under: no Hub (huggingface_hub's cached constant too), the tiny architectures'
    configs from `<root>/_configs`, `root` as the models library (unless `home` is False), images into `outputs`."""
    import huggingface_hub.constants as hf_constants

    root = Path(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLAB_SD_CONFIGS", str(root / "_configs"))
    if home:
        monkeypatch.setenv("COLAB_SD_HOME", str(root))
    monkeypatch.setenv("COLAB_SD_OUTPUTS", str(outputs))


def build_library(root: os.PathLike | str) -> dict:
    """Every tiny family in one models root (encoders and VAEs shared the way the real ones are)."""
    root = Path(root)
    out = {"zimage": save_zimage(build_zimage(), root)}
    flux, schnell, chroma, sd3, klein = build_flux(), build_flux(schnell=True), build_chroma(), build_sd3(), build_klein()
    out["flux"] = save_family(flux, "flux-dev", "flux-dev", root, "flux")
    out["schnell"] = save_family(schnell, "flux-schnell", "flux-schnell", root, "flux")
    out["chroma"] = save_family(chroma, "chroma", "chroma", root, "flux")
    out["sd3"] = save_family(sd3, "sd3", "sd3-medium", root, "sd3")
    out["klein"] = save_family(klein, "klein", "flux2-klein-4b", root, "flux")
    enc = root / "text_encoder"
    _save(_weights(sd3.text_encoder), enc / "tiny-clip_l.safetensors")  # with its projection, as ComfyUI's
    _save(_weights(sd3.text_encoder_2), enc / "tiny-clip_g.safetensors")
    _save(_weights(flux.text_encoder_2), enc / "tiny-t5xxl.safetensors")
    _save(qwen_to_comfy(_weights(klein.text_encoder)), enc / "tiny-qwen3-klein.safetensors")
    _save(tiny_models.vae_to_original(_weights(sd3.vae), prefix=""), root / "vae" / "tiny-sd3-vae.safetensors")
    klein.vae.save_pretrained(str(root / "vae" / "tiny-flux2-vae"), safe_serialization=True)
    shutil.move(str(root / "vae" / "tiny-flux2-vae" / "diffusion_pytorch_model.safetensors"),
                str(root / "vae" / "tiny-flux2-vae.safetensors"))
    shutil.rmtree(root / "vae" / "tiny-flux2-vae")
    out["pipes"] = {"flux": flux, "schnell": schnell, "chroma": chroma, "sd3": sd3, "klein": klein}
    return out
