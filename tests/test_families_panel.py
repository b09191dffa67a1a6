"""The Generate panel shows the controls the chosen model's family uses (asked of the families registry), with real
widgets over a library of header-only files (nothing is loaded)."""
from __future__ import annotations

import safetensors_factory as sf
from test_families_probe import CASES, flux_keys

from colab_sd.library import list_models
from colab_sd.ui.generate_panel import GeneratePanel


def test_controls_follow_the_family(tmp_path):
    root = tmp_path / "models"
    sf.write_safetensors(root / "checkpoint" / "z_image_turbo.safetensors", CASES["zimage"][0])
    sf.write_safetensors(root / "checkpoint" / "flux1-dev.safetensors", flux_keys())
    sf.write_safetensors(root / "checkpoint" / "flux1-schnell.safetensors", flux_keys(guidance=False))
    sf.make_checkpoint(root / "checkpoint" / "sdxl-model.safetensors", "sdxl")
    panel = GeneratePanel(root)
    panel.set_library(list_models(root))

    panel.model.value = "z_image_turbo.safetensors"
    assert (panel.steps.value, panel.cfg.value, panel.cfg.disabled) == (9, 0.0, True)  # Turbo: no CFG at all
    assert panel.negative.layout.display == "none" and panel.sampler.layout.display == "none"
    assert panel.size.value == "1024×1024"
    assert panel.request_fields()["cfg"] == 0.0

    panel.model.value = "flux1-dev.safetensors"
    assert (panel.steps.value, panel.cfg.value, panel.cfg.description) == (28, 3.5, "Guidance")
    assert not panel.cfg.disabled and panel.clip_skip.layout.display == "none"

    panel.model.value = "flux1-schnell.safetensors"
    assert (panel.steps.value, panel.cfg.value, panel.cfg.disabled) == (4, 0.0, True)

    panel.model.value = "sdxl-model.safetensors"
    assert (panel.steps.value, panel.cfg.value, panel.cfg.description) == (25, 7.0, "CFG")
    assert panel.negative.layout.display is None and panel.sampler.layout.display is None
    assert panel.clip_skip.layout.display is None
