"""Tiny random Stable Diffusion models for offline tests: real diffusers classes, a few kB of weights.

Everything a user meets in a models folder can be built here, small:

- `build_sd1()` / `build_sdxl()`: SD1-like and SDXL-like pipelines (real block layout, tiny widths; the
  text-encoder widths are the real ones, 768 / 768+1280, because family detection reads them);
- `save_diffusers(pipe, folder)`: a diffusers folder (`save_pretrained`);
- `save_single_file(pipe, family, path)`: an original-layout (CompVis / SGM) checkpoint, the way CivitAI ships them,
  written by the reverse of diffusers' own single-file conversion;
- `save_config_folder(pipe, folder)`: the same folder without weights (what `from_single_file(config=...)` needs);
- `save_kohya_lora`, `save_peft_lora`, `save_embedding`, `save_vae_single_file`: the add-ons;
- `tiny_library()`: one models root with all of it, built once per test session and cached.

Importing this module imports torch and diffusers; only tests and benchmarks use it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Optional

import torch

# ---------------------------------------------------------------------------------------------- tokenizer

SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_WORDS = ("a", "photo", "of", "cat", "dog", "red", "blue", "green", "house", "tree", "portrait", "woman", "man",
          "landscape", "mountain", "sky", "night", "day", "painting", "style", "high", "quality", "blurry", "ugly")


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte → printable-character table (the base alphabet of its BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer_files() -> dict[str, str]:
    """vocab.json and merges.txt of a tiny CLIP BPE (~600 tokens) that still splits real words."""
    alphabet = list(_bytes_to_unicode().values())
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    seen = set(vocab_list)
    for word in _WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            line = f"{parts[0]} {parts[1]}"
            if line not in merges:
                merges.append(line)
            if merged not in seen:
                seen.add(merged)
                vocab_list.append(merged)
            parts = [merged] + parts[2:]
    vocab_list += list(SPECIAL)
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    return {"vocab.json": json.dumps(vocab, ensure_ascii=False),
            "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n"}


TOKENIZER_VOCAB_SIZE = len(json.loads(tokenizer_files()["vocab.json"]))
TEXT_VOCAB_SIZE = 1000  # embedding rows in the tiny text encoders (> vocabulary, like the real 49408)


def write_tokenizer(folder: os.PathLike | str, pad_token: str = "<|endoftext|>") -> Path:
    """A loadable CLIPTokenizer folder (model_max_length 77, as in the real models)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tokenizer_files().items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": SPECIAL[0], "eos_token": SPECIAL[1],
        "unk_token": SPECIAL[1], "pad_token": pad_token, "do_lower_case": True, "errors": "replace",
    }), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": SPECIAL[0], "eos_token": SPECIAL[1], "unk_token": SPECIAL[1], "pad_token": pad_token}),
        encoding="utf-8")
    return folder


def load_tokenizer(pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_tokenizer(tmp, pad_token))


# ---------------------------------------------------------------------------------------------- pipelines


def _text_config(hidden: int, projection: Optional[int] = None):
    from transformers import CLIPTextConfig

    vocab = json.loads(tokenizer_files()["vocab.json"])
    kw = dict(hidden_size=hidden, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              vocab_size=TEXT_VOCAB_SIZE, max_position_embeddings=77, hidden_act="gelu",
              bos_token_id=vocab[SPECIAL[0]], eos_token_id=vocab[SPECIAL[1]], pad_token_id=vocab[SPECIAL[1]])
    if projection is not None:
        kw["projection_dim"] = projection
    return CLIPTextConfig(**kw)


def _trained_norms(encoder, seed: int):
    """Layer norms with the non-trivial scale and shift trained models have: a fresh LayerNorm's output has a mean
    of exactly 0, which A1111's emphasis (restore the mean after weighting) cannot work with."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.1 + 0.1 * torch.randn(module.bias.shape, generator=g))
    return encoder


def tiny_vae(seed: int = 0, scaling_factor: float = 0.18215):
    """A 4-level AutoencoderKL (8x down, like the real one) with a handful of channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(4, 4, 8, 8), layers_per_block=1, norm_num_groups=2, latent_channels=4,
                         in_channels=3, out_channels=3, sample_size=64, scaling_factor=scaling_factor,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def build_sd1(seed: int = 0):
    """An SD1-like StableDiffusionPipeline: SD1.5's block layout, tiny channels, CLIP width 768."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8, 16, 16), layers_per_block=2, norm_num_groups=4, sample_size=8,
        in_channels=4, out_channels=4, cross_attention_dim=768, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = tiny_vae(seed + 1)
    torch.manual_seed(seed + 2)
    text_encoder = _trained_norms(CLIPTextModel(_text_config(768)), seed + 3)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=load_tokenizer(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def build_sd2(seed: int = 0, prediction: str = "v_prediction"):
    """An SD2-like pipeline: linear projections, 1024-wide OpenCLIP-style text encoder, DDIM (v-prediction)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8, 16, 16), layers_per_block=2, norm_num_groups=4, sample_size=8,
        in_channels=4, out_channels=4, cross_attention_dim=1024, attention_head_dim=(2, 2, 4, 4),
        use_linear_projection=True, upcast_attention=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = tiny_vae(seed + 1)
    torch.manual_seed(seed + 2)
    text_encoder = _trained_norms(CLIPTextModel(_text_config(1024)), seed + 3)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=load_tokenizer("!"),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def build_sdxl(seed: int = 0):
    """An SDXL-like pipeline: SDXL's block layout and conditioning widths (768 + 1280 = 2048, 2816 add-embeds)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16, 32), layers_per_block=2, norm_num_groups=4, sample_size=8,
        in_channels=4, out_channels=4, cross_attention_dim=2048, attention_head_dim=(2, 4, 8),
        transformer_layers_per_block=(1, 1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    vae = tiny_vae(seed + 1, scaling_factor=0.13025)
    torch.manual_seed(seed + 2)
    text_encoder = _trained_norms(CLIPTextModel(_text_config(768)), seed + 3)
    text_encoder_2 = _trained_norms(CLIPTextModelWithProjection(_text_config(1280, projection=1280)), seed + 4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading", num_train_timesteps=1000)
    return StableDiffusionXLPipeline(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=load_tokenizer(), tokenizer_2=load_tokenizer("!"), scheduler=scheduler)


# ---------------------------------------------------------------------------------------------- original layout
# The reverse of diffusers.loaders.single_file_utils: diffusers names → CompVis/SGM names.

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))


def unet_to_original(sd: dict, layers_per_block: int) -> dict:
    per = layers_per_block + 1
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    up_has_attention = {int(m.group(1)) for k in sd if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, value in sd.items():
        prefix, _, leaf = key.rpartition(".")
        new = None
        if prefix in fixed:
            new = f"{fixed[prefix]}.{leaf}"
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{per * i + j + 1}.0.{_resnet_name(rest)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            new = f"input_blocks.{per * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet_name(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"output_blocks.{per * int(m[1]) + int(m[2])}.0.{_resnet_name(m[3])}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            new = f"output_blocks.{per * int(m[1]) + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            i = int(m[1])
            new = f"output_blocks.{per * i + layers_per_block}.{2 if i in up_has_attention else 1}.conv.{m[2]}"
        if new is None:
            raise KeyError(f"no original name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


def _resnet_name(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def vae_to_original(sd: dict, prefix: str = "first_stage_model.") -> dict:
    n_up = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out = {}
    for key, value in sd.items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            leaf = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
            part, _, kind = m[2].rpartition(".")
            new = f"{m[1]}.mid.attn_1.{leaf[part]}.{kind}"
            if kind == "weight" and value.ndim == 2:
                value = value[:, :, None, None]  # linear → 1x1 conv, as in the original
        new = new.replace("conv_shortcut", "nin_shortcut")
        out[prefix + new] = value
    return out


def _strip_text_model(sd: dict) -> dict:
    return {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}


def clip_to_original(sd: dict, prefix: str) -> dict:
    """CLIP-L (SD1 / SDXL's first encoder): the original keeps transformers' names under a prefix."""
    return {f"{prefix}text_model.{k}": v for k, v in _strip_text_model(sd).items() if not k.startswith("text_projection")}


def open_clip_to_original(sd: dict, prefix: str) -> dict:
    """OpenCLIP (SDXL's second encoder): fused in_proj, resblocks, transposed text_projection."""
    out, qkv = {}, {}
    for key, value in _strip_text_model(sd).items():
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.+)", key):
            layer, rest = m[1], m[2]
            if pm := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
                qkv.setdefault((layer, pm[2]), {})[pm[1]] = value
                continue
            rest = (rest.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc")
                    .replace("mlp.fc2", "mlp.c_proj").replace("self_attn.out_proj", "attn.out_proj"))
            out[f"{prefix}transformer.resblocks.{layer}.{rest}"] = value
        else:
            raise KeyError(f"no original name for OpenCLIP key {key}")
    for (layer, kind), parts in qkv.items():
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def to_original(pipe, family: str) -> dict:
    """The whole pipeline as one original-layout state dict (the layout of CivitAI checkpoints)."""
    sd = unet_to_original(pipe.unet.state_dict(), pipe.unet.config.layers_per_block)
    sd.update(vae_to_original(pipe.vae.state_dict()))
    if family == "sdxl":
        sd.update(clip_to_original(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        sd.update(open_clip_to_original(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    elif family == "sd2":
        sd.update(open_clip_to_original(pipe.text_encoder.state_dict(), "cond_stage_model.model."))
    else:
        sd.update(clip_to_original(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    return sd


def save_single_file(pipe, family: str, path: os.PathLike | str, dtype=torch.float16, metadata: Optional[dict] = None) -> Path:
    """Write the pipeline as one `.safetensors` (fp16 by default, as CivitAI ships them) or `.ckpt` file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(dtype).contiguous() for k, v in to_original(pipe, family).items()}
    if path.suffix == ".ckpt":
        torch.save({"state_dict": sd}, path)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path), metadata=metadata or {"format": "pt"})
    return path


def save_diffusers(pipe, folder: os.PathLike | str) -> Path:
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def save_config_folder(pipe, folder: os.PathLike | str) -> Path:
    """A diffusers folder with configs and tokenizers only: what single-file loading reads offline."""
    folder = save_diffusers(pipe, folder)
    for weights in list(folder.rglob("*.safetensors")) + list(folder.rglob("*.bin")):
        weights.unlink()
    return folder


# ---------------------------------------------------------------------------------------------- add-ons


def _lora_targets(pipe) -> list[tuple[str, str, torch.nn.Linear]]:
    """(component, module name, module) for every attention projection a LoRA would train."""
    found = []
    for name, module in pipe.unet.named_modules():
        if isinstance(module, torch.nn.Linear) and re.search(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$", name):
            found.append(("unet", name, module))
    for component in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, component, None)
        if encoder is None:
            continue
        for name, module in encoder.named_modules():
            if isinstance(module, torch.nn.Linear) and re.search(r"self_attn\.(q_proj|k_proj|v_proj|out_proj)$", name):
                found.append((component, name if name.startswith("text_model.") else "text_model." + name, module))
    return found


def save_kohya_lora(pipe, path: os.PathLike | str, rank: int = 4, alpha: float = 2.0, seed: int = 7,
                    scale: float = 0.5, conv: bool = False) -> Path:
    """A LoRA in kohya-ss / A1111 format (lora_unet_… / lora_te_… with lora_down, lora_up, alpha).

    SD1 names follow diffusers module paths (as sd-scripts writes them); SDXL UNet names would use the
    original block names, which diffusers converts too, but the SD1 form is the one tested here.
    `conv=True` adds the ResNet 3x3 convolutions: a LyCORIS LoCon.
    """
    g = torch.Generator().manual_seed(seed)
    sd = {}
    if conv:
        for name, module in pipe.unet.named_modules():
            if isinstance(module, torch.nn.Conv2d) and ".resnets." in name and name.endswith(("conv1", "conv2")):
                base = "lora_unet_" + name.replace(".", "_")
                sd[f"{base}.lora_down.weight"] = torch.randn(rank, module.in_channels, 3, 3, generator=g) * scale
                sd[f"{base}.lora_up.weight"] = torch.randn(module.out_channels, rank, 1, 1, generator=g) * scale
                sd[f"{base}.alpha"] = torch.tensor(alpha)
    te_prefix = {"text_encoder": "lora_te1" if getattr(pipe, "text_encoder_2", None) is not None else "lora_te",
                 "text_encoder_2": "lora_te2"}
    for component, name, module in _lora_targets(pipe):
        base = ("lora_unet" if component == "unet" else te_prefix[component]) + "_" + name.replace(".", "_")
        sd[f"{base}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=g) * scale
        sd[f"{base}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=g) * scale
        sd[f"{base}.alpha"] = torch.tensor(alpha)
    module = "lycoris.kohya" if conv else "networks.lora"
    return _save_lora(sd, path, {"ss_network_module": module, "ss_network_dim": str(rank),
                                 "ss_network_alpha": str(alpha)})


def save_peft_lora(pipe, path: os.PathLike | str, rank: int = 4, seed: int = 11, scale: float = 0.5,
                   text_encoder: bool = False) -> Path:
    """A LoRA in the diffusers / peft format (unet.….lora_A.weight / lora_B.weight)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for component, name, module in _lora_targets(pipe):
        if component != "unet" and not text_encoder:
            continue
        sd[f"{component}.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=g) * scale
        sd[f"{component}.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=g) * scale
    return _save_lora(sd, path, {"format": "pt"})


def _save_lora(sd: dict, path: os.PathLike | str, metadata: dict) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def save_embedding(path: os.PathLike | str, family: str = "sd1", vectors: int = 2, seed: int = 3) -> Path:
    """A textual-inversion embedding: SD1 `emb_params` [n, 768]; SDXL `clip_l` [n, 768] + `clip_g` [n, 1280]."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    if family == "sdxl":
        sd = {"clip_l": torch.randn(vectors, 768, generator=g), "clip_g": torch.randn(vectors, 1280, generator=g)}
    else:
        sd = {"emb_params": torch.randn(vectors, 768, generator=g)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":  # A1111's own format: {"string_to_param": {"*": vectors}, "name": …}
        torch.save({"string_to_param": {"*": sd["emb_params"]}, "name": path.stem, "step": 1000}, path)
    else:
        save_file(sd, str(path))
    return path


def save_vae_single_file(path: os.PathLike | str, seed: int = 42, scaling_factor: float = 0.18215) -> Path:
    """A standalone VAE file in the original layout (no prefix), like vae-ft-mse-840000 or sdxl_vae."""
    from safetensors.torch import save_file

    vae = tiny_vae(seed, scaling_factor=scaling_factor)
    sd = {k: v.contiguous() for k, v in vae_to_original(vae.state_dict(), prefix="").items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


# ---------------------------------------------------------------------------------------------- a whole library

_LIBRARY: Optional[Path] = None
_LIBRARY_LOCK = threading.Lock()


def build_library(root: os.PathLike | str) -> Path:
    """A models root with every tiny artefact, named as a user would have them:

        checkpoint/tiny-sd1.safetensors        checkpoint/tiny-sdxl.safetensors   (original layout, fp16)
        checkpoint/tiny-sd1-diffusers/         checkpoint/tiny-sdxl-diffusers/    (diffusers folders)
        checkpoint/tiny-sd2-768-v.safetensors  (an SD2 v-prediction single file)
        checkpoint/tiny-sd1-pickle.ckpt        (the SD1 one as a torch pickle, {"state_dict": …})
        lora/tiny-kohya.safetensors  lora/tiny-locon.safetensors (LyCORIS LoCon)
        lora/tiny-peft.safetensors  lora/tiny-sdxl-peft.safetensors
        embedding/tiny-emb.safetensors  embedding/tiny-a1111-emb.pt  embedding/tiny-sdxl-emb.safetensors
        vae/tiny-vae.safetensors  vae/tiny-sdxl-vae.safetensors
        _configs/sd1/  _configs/sd2/  _configs/sdxl/   (config folders for the tiny architectures, no weights)
    """
    root = Path(root)
    sd1, sdxl = build_sd1(), build_sdxl()
    save_single_file(sd1, "sd1", root / "checkpoint" / "tiny-sd1.safetensors")
    save_single_file(sdxl, "sdxl", root / "checkpoint" / "tiny-sdxl.safetensors")
    save_diffusers(sd1, root / "checkpoint" / "tiny-sd1-diffusers")
    save_single_file(sd1, "sd1", root / "checkpoint" / "tiny-sd1-pickle.ckpt")
    save_diffusers(sdxl, root / "checkpoint" / "tiny-sdxl-diffusers")
    save_config_folder(sd1, root / "_configs" / "sd1")
    save_config_folder(sdxl, root / "_configs" / "sdxl")
    sd2 = build_sd2()
    save_single_file(sd2, "sd2", root / "checkpoint" / "tiny-sd2-768-v.safetensors")
    save_config_folder(sd2, root / "_configs" / "sd2")
    save_kohya_lora(sd1, root / "lora" / "tiny-kohya.safetensors")
    save_kohya_lora(sd1, root / "lora" / "tiny-locon.safetensors", seed=9, conv=True)
    save_peft_lora(sd1, root / "lora" / "tiny-peft.safetensors")
    save_peft_lora(sdxl, root / "lora" / "tiny-sdxl-peft.safetensors")
    save_embedding(root / "embedding" / "tiny-emb.safetensors", "sd1")
    save_embedding(root / "embedding" / "tiny-a1111-emb.pt", "sd1", seed=5)
    save_embedding(root / "embedding" / "tiny-sdxl-emb.safetensors", "sdxl")
    save_vae_single_file(root / "vae" / "tiny-vae.safetensors")
    save_vae_single_file(root / "vae" / "tiny-sdxl-vae.safetensors", scaling_factor=0.13025)
    return root


def tiny_library() -> Path:
    """The library of `build_library`, built once per process in a temporary folder (read-only by convention:
    copy it, or use `copy_library`, before changing anything in it)."""
    global _LIBRARY
    with _LIBRARY_LOCK:
        if _LIBRARY is None:
            folder = Path(tempfile.mkdtemp(prefix="colab_sd_tiny_"))
            _LIBRARY = build_library(folder)
        return _LIBRARY


def copy_library(dest: os.PathLike | str) -> Path:
    """A private copy of `tiny_library()` at `dest` (hard links where possible: it is fast and small)."""
    dest = Path(dest)
    src = tiny_library()

    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link, dirs_exist_ok=True)
    return dest
