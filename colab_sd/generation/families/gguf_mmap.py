"""A GGUF transformer's state dict that stays in the file: memory-mapped, copy-on-write, never copied into RAM.

diffusers' own reader (`models/model_loading_utils.py::load_gguf_checkpoint`) takes `tensor.data.copy()` of every
tensor, so loading a 6.7 GB Flux Q4 GGUF holds 6.9 GB of anonymous memory on top of the mapped file (measured:
benchmarks/bench_load_memory.py) — two copies of the model in RAM, on a T4 runtime that dies above 12.7 GB. Here each
tensor is a view of the file mapped copy-on-write (`np.memmap` mode "c", as ComfyUI-GGUF keeps its memmaps): the
pages are the page cache's, read when the weights move to the GPU or are dequantized, dropped by the kernel under
pressure, and an in-place write would only touch a private copy. The dict is what diffusers' reader returns
(packed weights as `GGUFParameter` with their quant type, F32/F16 as plain tensors), so
`Model.from_single_file(state_dict, quantization_config=GGUFQuantizationConfig(...))` loads it the same way.

Errors: `InputError` for a quant type diffusers cannot dequantize (one line, naming the types it can), for a file
that is not GGUF or is cut short.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import InputError


def state_dict(path) -> dict:
    """name → tensor for every tensor of the GGUF file at `path`, backed by the file (no copy)."""
    import gguf
    import torch
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES, GGUFParameter

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path), mode="c")
    except (ValueError, OSError, IndexError, KeyError) as err:
        raise InputError(f"{path.name} is not a readable GGUF file ({str(err).splitlines()[0][:120]}): download it "
                         f"again") from None
    plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    out = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type
        if kind not in plain and kind not in SUPPORTED_GGUF_QUANT_TYPES:
            names = ", ".join(sorted(t.name for t in SUPPORTED_GGUF_QUANT_TYPES))
            raise InputError(f"{path.name} stores {tensor.name} as {kind.name}, which diffusers cannot dequantize: "
                             f"use a GGUF of this model in one of {names}")
        weights = torch.from_numpy(tensor.data)  # a view of the copy-on-write mapping
        out[tensor.name] = weights if kind in plain else GGUFParameter(weights, quant_type=kind)
    return out
