"""Settings read back from a Forge / colab_sd image of a distilled-guidance model (Flux dev): Forge writes
`CFG scale: 1, Distilled CFG Scale: 3.5` (the guidance the model ran with) and, with hires fix,
`Hires Distilled CFG Scale`. Reusing the image must give colab_sd's `cfg` (which for Flux is that guidance) 3.5, not 1:
otherwise "Use these settings", `generate --from` and Recreate would silently make another picture.
"""
from __future__ import annotations

from colab_sd.generation.reuse import request_from_parameters
from colab_sd.infotext import from_text

FORGE_FLUX = ("a lighthouse at dusk\n"
              "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 42, "
              "Size: 896x1152, Model hash: 0123456789, Model: flux1-dev-Q4_K_M, Denoising strength: 0.4, "
              "Hires upscale: 1.5, Hires steps: 10, Hires upscaler: Lanczos, Hires CFG Scale: 1, "
              "Hires Distilled CFG Scale: 2.5, Version: f2.0.1v1.10.1")


def test_forge_flux_guidance_is_read_as_colab_sd_cfg(tmp_path):
    params = from_text(FORGE_FLUX)
    assert params["cfg"] == 1.0 and params["distilled_cfg"] == 3.5 and params["hires_distilled_cfg"] == 2.5
    fields = request_from_parameters(params, models_dir=tmp_path, compute_hashes=False).fields
    assert fields["cfg"] == 3.5
    assert fields["hires_cfg"] == 2.5 and fields["hires_steps"] == 10


def test_true_cfg_images_keep_their_cfg(tmp_path):
    params = from_text("a cat\nSteps: 20, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 64x64")
    assert params["distilled_cfg"] is None
    assert request_from_parameters(params, models_dir=tmp_path, compute_hashes=False).fields["cfg"] == 5.0
