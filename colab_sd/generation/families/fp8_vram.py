"""A plain fp8 transformer file kept in fp8 in memory and upcast one layer at a time to compute (layerwise casting).

A T4 has no fp8 math, but fp8 *storage* halves the transformer's VRAM: diffusers' documented route is to load in
fp16 and call `enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float16)`
(families reference §3), which holds a whole fp16 copy in RAM first. Here the model is built on the meta device
and given the file's tensors as they are (`load_state_dict(assign=True)`: fp8 weights stay fp8, nothing is upcast
in RAM), through the family's own single-file converter when the keys are not diffusers'; the layers diffusers
hooks keep fp8 and are upcast per forward, and the ones it leaves alone (`_skip_layerwise_casting_patterns`: norms,
embedders, pads) get the compute dtype. Peak RAM: the file's size. The memory plan chooses this (`Plan.storage ==
"fp8"`) only on CUDA, for a plain fp8 file, when the 16-bit transformer does not fit. LoRAs loaded onto it keep
their own weights in the compute dtype (`_adapters_follow`).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import GenerationError
from .fp8 import denoiser_keys

HOOK = "layerwise_casting"  # diffusers.hooks.layerwise_casting's registry name


def load(cls, path, config: Path, compute_dtype):
    """`cls` (a diffusers transformer class) from the plain fp8 safetensors file at `path`, its fp8 weights kept
    as stored (e4m3fn or e5m2, whichever the file holds) and computed in `compute_dtype`.

    Raises GenerationError when the file's keys do not fill the model (not this family's transformer).
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_model import (SINGLE_FILE_LOADABLE_CLASSES,
                                                     _should_convert_state_dict_to_diffusers)
    from safetensors import safe_open

    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    settings = cls.load_config(str(config), subfolder="transformer")
    with init_empty_weights():
        model = cls.from_config(settings)
    with safe_open(str(path), framework="pt", device="cpu") as fh:  # a bundle: its denoiser's keys only
        state = {key: fh.get_tensor(key) for key in denoiser_keys(fh.keys())}
    if _should_convert_state_dict_to_diffusers(model.state_dict(), state):
        convert = SINGLE_FILE_LOADABLE_CLASSES[cls.__name__]["checkpoint_mapping_fn"]
        state = convert(config=settings, checkpoint=state)
    counts = {d: sum(v.numel() for v in state.values() if v.dtype == d) for d in fp8}
    storage = max(counts, key=counts.get)
    # fp8 weights as they are; anything else (norms, biases, pads: a few MB) in the compute dtype
    state = {k: v if v.dtype in fp8 or not v.is_floating_point() else v.to(compute_dtype) for k, v in state.items()}
    missing, _unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing:
        raise GenerationError(f"{Path(path).name} lacks {len(missing)} of {cls.__name__}'s weights (first: "
                              f"{missing[0]}): is it this family's transformer?")
    del state
    model.enable_layerwise_casting(storage_dtype=storage, compute_dtype=compute_dtype)
    for module in model.modules():  # unhooked modules compute with what they hold: give them the compute dtype
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(HOOK) is not None:
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.dtype in fp8:
                setattr(module, name, torch.nn.Parameter(param.to(compute_dtype), requires_grad=False))
    _adapters_follow(model, compute_dtype)
    return model.eval()


def _adapters_follow(model, compute_dtype) -> None:
    """LoRAs loaded later compute in `compute_dtype`: peft creates an adapter in its base layer's dtype (fp8 here)
    and casts the input to it, which no fp8 matmul accepts (diffusers 0.42 re-applies neither the casting nor its
    own `_disable_peft_input_autocast` to adapters added after `enable_layerwise_casting`). So this model's
    `load_lora_adapter` (what every `load_lora_weights` calls) is followed by moving the adapters to the compute
    dtype and turning peft's input cast off; the base weights stay fp8."""
    import torch

    load_adapter = model.load_lora_adapter

    def load_lora_adapter(*args, **kwargs):
        out = load_adapter(*args, **kwargs)
        for module in model.modules():
            for name in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
                part = getattr(module, name, None)
                if isinstance(part, (torch.nn.ModuleDict, torch.nn.ParameterDict)):
                    part.to(compute_dtype)
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
        return out

    model.load_lora_adapter = load_lora_adapter
