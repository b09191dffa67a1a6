"""The Generate panel's controls for the chosen model's family, asked of the families registry (the panel holds
no family knowledge): steps / guidance defaults and label, the negative prompt, the A1111 sampler lists and clip
skip only where they mean something, and the family's size presets. No torch: headers only."""
from __future__ import annotations

import logging
from typing import Optional

log = logging.getLogger("colab_sd.ui")


def family_for(entry) -> Optional[object]:
    """The `Family` (variant applied) of a library entry, from its sidecar and header; None when unknown."""
    if entry is None:
        return None
    from ..generation import families
    from ..generation.families.identify import identify

    try:
        found = identify(entry.path, entry.meta)
    except Exception:  # an unreadable header only costs the tailored controls
        log.debug("identify failed for %s", entry.path, exc_info=True)
        return None
    fam = families.get(found["family"])
    return fam.for_variant(found["variant"]) if fam is not None else None


def presets(fam) -> list[str]:
    return [f"{w}×{h}" for w, h in fam.controls["sizes"]]


def apply(panel, entry) -> Optional[object]:
    """Show / hide and preset the panel's widgets for `entry`'s family; returns the family (None: unchanged)."""
    fam = family_for(entry)
    if fam is None:
        return None
    controls = fam.controls
    key = (fam.id, fam.variant)
    if getattr(panel, "_family_key", None) != key:  # a new family: its defaults (the user's tweaks stay otherwise)
        panel._family_key = key
        panel.steps.value = controls["steps"]
        panel.cfg.min = 0.0
        panel.cfg.value = fam.cfg  # where guidance is ignored, the value the pipeline expects (0 / 1), shown disabled
    label, _ = controls["cfg"] or ("CFG", None)
    panel.cfg.description = "Guidance" if label == "Guidance" else "CFG"
    panel.cfg.disabled = controls["cfg"] is None
    for widget, shown in ((panel.negative, controls["negative_prompt"]), (panel.sampler, controls["sampler"]),
                          (panel.schedule, controls["sampler"]), (panel.clip_skip, controls["clip_skip"])):
        widget.layout.display = None if shown else "none"
    panel._family = fam
    second = getattr(panel, "second", None)
    if second is not None:
        second_pass(second, controls)
    return fam


def second_pass(second, controls: dict) -> None:
    """The hires row and the img2img box only for families with an image-to-image pipeline (all but Flux.2
    Klein / Kontext); the mask (inpainting) only for the UNet families; the hires sampler only where the A1111
    sampler list applies. A hidden control is also left out of the request (`SecondPassControls.fields`)."""
    from .second_pass import SAME

    for widget in (second.hires.widget, second.img2img.widget):
        widget.layout.display = None if controls["img2img"] else "none"
    for widget in (second.img2img.inpaint, second.img2img.mask_box):
        widget.layout.display = None if controls["inpaint"] else "none"
    if not controls["inpaint"]:
        second.img2img.inpaint.value = False
    second.hires.sampler.layout.display = None if controls["sampler"] else "none"
    if not controls["sampler"]:
        second.hires.sampler.value = SAME
