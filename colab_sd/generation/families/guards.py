"""fp16 on GPUs without bf16 (T4): keep images finite, and never let a NaN image pass as a picture.

- `clamp_fp16(transformer)`: forward hooks that map inf/NaN to ±65504 / 0 on the outputs of feed-forward layers
  and blocks, for families whose diffusers transformer has no clamp of its own (`Family.fp16 == "guard"`: Z-Image);
  the fix ComfyUI (`clamp_fp16` in its NextDiT code) and SD.Next (#4753) apply. Flux, Chroma, Flux.2 are already
  clamped inside diffusers (reference §5).
- `vae_guard(vae, dtype)`: decode in the VAE's own dtype (the fp32 VAE the KL-VAE families need on fp16 GPUs
  gets fp16 latents otherwise) and raise `NaNImageError` when the decoded image holds NaN/inf, so a black PNG is
  never saved; the message names the fix.
"""
from __future__ import annotations

from ...errors import GenerationError

FP16_MAX = 65504.0


class NaNImageError(GenerationError):
    """The decoded image is NaN/inf: what fp16 overflow produces (it would save as a black PNG)."""


def _clamp(_module, _inputs, output):
    import torch

    def fix(t):
        if isinstance(t, torch.Tensor) and t.dtype == torch.float16:
            return torch.nan_to_num(t, nan=0.0, posinf=FP16_MAX, neginf=-FP16_MAX)
        return t

    if isinstance(output, tuple):
        return tuple(fix(t) for t in output)
    return fix(output)


def clamp_fp16(transformer) -> int:
    """Hook every feed-forward and transformer block of `transformer`; returns how many modules were hooked."""
    hooked = 0
    for name, module in transformer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        is_block = name.count(".") == 1 and name.split(".")[0] in ("layers", "noise_refiner", "context_refiner")
        if leaf in ("feed_forward", "ff", "final_layer") or is_block:
            module.register_forward_hook(_clamp)
            hooked += 1
    return hooked


def vae_guard(vae, family_name: str, dtype_name: str) -> None:
    """Wrap `vae.decode` (once): latents cast to the VAE's dtype; NaN/inf output raises NaNImageError."""
    if getattr(vae, "_colab_sd_guard", False):
        return
    original = vae.decode

    def decode(z, *args, **kwargs):
        import torch

        z = z.to(vae.dtype) if isinstance(z, torch.Tensor) and z.dtype != vae.dtype else z
        out = original(z, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else getattr(out, "sample", None)
        if isinstance(sample, torch.Tensor) and not torch.isfinite(sample).all():
            hint = ("run it in fp32 (dtype='fp32') or on a GPU with bf16" if dtype_name == "fp16"
                    else "the model file may be damaged; try another file of it")
            raise NaNImageError(f"{family_name} produced a NaN image in {dtype_name} (nothing was saved): {hint}")
        return out

    vae.decode = decode
    vae._colab_sd_guard = True
