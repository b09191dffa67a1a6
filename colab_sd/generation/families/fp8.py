"""ComfyUI's scaled fp8 transformer files turned into plain state dicts (every weight times its scale).

Two layouts carry scales (facts from ComfyUI's `comfy/utils.py` `convert_old_quants`, `comfy/ops.py`
`mixed_precision_ops` and `comfy/quant_ops.py` `TensorCoreFP8Layout`; families reference §1/§3):
- "scaled fp8": a `scaled_fp8` marker tensor, `<layer>.weight` in fp8 with `<layer>.scale_weight` (fp32, one value
  per tensor in ComfyUI's own files) and sometimes `<layer>.scale_input` (only used by fp8 matmuls);
- "mixed" quantized files: `<layer>.comfy_quant` (uint8 bytes of a JSON `{"format": …}`, or the same layer table as
  `_quantization_metadata` in the header's metadata) with `<layer>.weight_scale` and optional `<layer>.input_scale`.
ComfyUI dequantizes as `weight.to(compute dtype) * scale`; diffusers does not know these keys and drops the scales
as unexpected, so the weights would be off by the scale (wrong images). `rescaled` does the multiplication while
reading the memory-mapped file, one tensor at a time, directly in the compute dtype (fp32 intermediates doubled RAM
in InvokeAI#9429); input scales and markers are dropped (a dequantized model does no fp8 matmul).

Formats dequantized here: `float8_e4m3fn` and `float8_e5m2` with a scale per tensor, per output row, or per block
of the input dimension. Others (`nvfp4`, `mxfp8`, `int8_*`, …: swizzled or packed block scales) are refused in one
line naming the bf16 / GGUF alternative. `scheme` reads the header only (no torch); `rescaled` imports torch.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Optional

from ...errors import InputError

# formats whose weights are dequantized exactly by weight × scale
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")
_SCALE = (".scale_weight", ".weight_scale")  # the weight's scale: old and new ComfyUI names
_DROP = (".scale_input", ".input_scale", ".comfy_quant")  # only fp8 matmuls / ComfyUI's layer table use these
_ALTERNATIVE = "use a bf16, plain fp8 or GGUF (Q8_0 / Q5_K_M) file of the same model instead"
BUNDLE_DENOISER = "model.diffusion_model."


def denoiser_keys(keys) -> list[str]:
    """The keys that belong to the denoiser: all of them, or in a ComfyUI bundle (denoiser under
    `model.diffusion_model.` beside `text_encoders.` and `vae.`) only those, so that a bundle's scaled text encoder
    does not make its denoiser "scaled" (families.bundle takes such encoders from the library)."""
    keys = [k for k in keys if k != "__metadata__"]
    inner = [k for k in keys if k.startswith(BUNDLE_DENOISER) or k == "scaled_fp8"]
    return inner if any(k.startswith(BUNDLE_DENOISER) for k in inner) else keys


def _is_marker(key: str) -> bool:
    return key == "scaled_fp8" or key.endswith(".scaled_fp8")


def is_scale_key(key: str) -> bool:
    """A key only scaled files have: the marker, a weight scale or a layer table."""
    return _is_marker(key) or _layer(key) is not None or key.endswith(".comfy_quant")


def _layer(key: str) -> Optional[str]:
    """`<layer>` of a scale key (`<layer>.scale_weight` / `<layer>.weight_scale`), else None."""
    for suffix in _SCALE:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return None


def _header(path: Path) -> tuple[dict, int]:
    """(header dict, byte offset where tensor data starts) of a safetensors file."""
    from ...probe.headers import read_safetensors_header

    head = read_safetensors_header(path)
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
    return head, 8 + length


def _layer_formats(path: Path, head: dict, start: int, keys: set) -> dict[str, str]:
    """layer → quant format, from `<layer>.comfy_quant` tensors among `keys` (JSON bytes, read directly from the
    file) and the metadata's `_quantization_metadata` layer table."""
    formats: dict[str, str] = {}
    meta = head.get("__metadata__") or {}
    if meta.get("_quantization_metadata"):
        try:
            layers = json.loads(meta["_quantization_metadata"]).get("layers") or {}
        except (ValueError, AttributeError):
            raise InputError(f"{path.name} has an unreadable _quantization_metadata header entry; "
                             f"{_ALTERNATIVE}") from None
        for layer, conf in layers.items():
            formats[layer] = str(conf.get("format") if isinstance(conf, dict) else conf)
    quant = [k for k in keys if k.endswith(".comfy_quant")]
    if quant:
        with open(path, "rb") as fh:
            for key in quant:
                begin, end = head[key]["data_offsets"]
                fh.seek(start + begin)
                try:
                    conf = json.loads(fh.read(end - begin).decode("utf-8"))
                except ValueError:
                    raise InputError(f"{path.name}: the layer table {key} is not JSON; {_ALTERNATIVE}") from None
                formats[key[: -len(".comfy_quant")]] = str(conf.get("format") if isinstance(conf, dict) else conf)
    return formats


def scheme(path) -> Optional[str]:
    """How a safetensors file's weights are scaled, from its header (no torch): None when they are not,
    "scaled fp8" (scaled_fp8 / scale_weight), or "ComfyUI float8_e4m3fn layers" (comfy_quant / weight_scale).

    Raises InputError (one line, naming the bf16 / GGUF alternative) for a format colab_sd cannot dequantize
    correctly (nvfp4, mxfp8, int8…, or a scale whose shape does not match its weight).
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() not in (".safetensors", ".sft"):
        return None
    head, start = _header(path)
    keys = denoiser_keys(head)
    formats = _layer_formats(path, head, start, set(keys))
    scaled = any(_is_marker(k) for k in keys) or any(_layer(k) is not None for k in keys)
    if not scaled and not formats:
        return None
    unknown = sorted({f for f in formats.values() if f not in FP8_FORMATS})
    if unknown:
        raise InputError(f"{path.name} holds ComfyUI {', '.join(unknown)} layers, which colab_sd cannot dequantize "
                         f"correctly; {_ALTERNATIVE}")
    for key in keys:
        layer = _layer(key)
        weight = head.get(f"{layer}.weight") if layer is not None else None
        if weight is not None and _block(weight.get("shape") or [], head[key].get("shape") or []) is None:
            raise InputError(f"{path.name}: the scale {key} {head[key].get('shape')} does not fit its weight "
                             f"{weight.get('shape')}, so colab_sd cannot rescale it correctly; {_ALTERNATIVE}")
    if formats:
        return "ComfyUI " + "/".join(sorted(set(formats.values()))) + " layers"
    return "scaled fp8"


def _block(weight: list, scale: list) -> Optional[tuple]:
    """How a scale of shape `scale` applies to a weight of shape `weight`: () one value for the whole tensor;
    ("broadcast",) it broadcasts as is; ("row", n) one value per output row; ("block", rows, blocks) one per
    block of the input dimension. None when it fits none of these (it would be applied wrongly)."""
    count = 1
    for d in scale:
        count *= int(d)
    if count == 1:
        return ()
    if len(scale) == len(weight) and all(int(s) in (1, int(w)) for s, w in zip(scale, weight)):
        return ("broadcast",)
    if len(scale) == 1 and weight and int(scale[0]) == int(weight[0]):
        return ("row", int(weight[0]))
    if len(weight) == 2 and len(scale) in (2, 3) and int(scale[0]) == int(weight[0]) \
            and (len(scale) == 2 or int(scale[2]) == 1) and int(weight[1]) % int(scale[1]) == 0:
        return ("block", int(weight[0]), int(scale[1]))
    return None


def dequantize(weight, scale, dtype):
    """weight × scale in `dtype` (a new tensor; `weight` itself, memory-mapped, is not written to)."""
    how = _block(list(weight.shape), list(scale.shape))
    out = weight.to(dtype=dtype, copy=True)
    factor = scale.to(dtype=dtype)
    if how is None:
        raise InputError(f"a scale of shape {list(scale.shape)} does not fit a weight of shape {list(weight.shape)}; "
                         f"{_ALTERNATIVE}")
    if how == ():
        out.mul_(factor.reshape(()))
    elif how[0] == "broadcast":
        out.mul_(factor)
    elif how[0] == "row":
        out.mul_(factor.reshape(-1, *([1] * (out.dim() - 1))))
    else:
        _, rows, blocks = how
        out.view(rows, blocks, -1).mul_(factor.reshape(rows, blocks, 1))
    return out


def rescaled(path, dtype) -> dict:
    """The file's state dict (in a ComfyUI bundle, the denoiser's keys only) with every scaled weight replaced by
    weight × scale in `dtype` and the scales, input scales and markers dropped; other fp8 tensors upcast to `dtype`,
    the rest left as stored (memory-mapped until the loader casts them). Peak RAM: the result (the model's size in
    `dtype`) plus one fp8 tensor.

    Raises InputError for what `scheme` refuses.
    """
    import torch
    from safetensors import safe_open

    path = Path(path)
    scheme(path)  # refuses unknown formats and misfitting scales before any tensor is read
    fp8 = {torch.float8_e4m3fn, torch.float8_e5m2}
    out = {}
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        keys = denoiser_keys(fh.keys())
        scales = {layer: key for key in keys if (layer := _layer(key)) is not None}
        for key in keys:
            if _is_marker(key) or key.endswith(_DROP) or _layer(key) is not None:
                continue
            tensor = fh.get_tensor(key)
            layer = key[: -len(".weight")] if key.endswith(".weight") else None
            if layer in scales:
                tensor = dequantize(tensor, fh.get_tensor(scales[layer]), dtype)
            elif tensor.dtype in fp8:
                tensor = tensor.to(dtype)
            out[key] = tensor
    return out
