"""A1111's sampler and schedule vocabulary: names, the diffusers scheduler behind each, the spellings users paste.

Light on purpose (no torch, no diffusers, nothing of `generation`): the CLI's option help, the panels and the CivitAI
reader need the names without paying for the generation package. `generation.samplers.make_scheduler` turns an
entry into a diffusers scheduler. Names, order and "Automatic" meanings follow A1111 ≥ 1.9
(modules/sd_samplers_kdiffusion.py, modules/sd_schedulers.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from .errors import InputError


@dataclass(frozen=True)
class Sampler:
    name: str  # as A1111 shows it
    scheduler: str  # diffusers class name
    options: dict = field(default_factory=dict)
    schedules: tuple[str, ...] = ("Automatic",)  # the schedule types this scheduler can follow
    automatic: str = "Normal"  # what "Automatic" means for it, as in A1111 ≥ 1.9
    needs: Optional[str] = None  # an extra package diffusers wants for it


_SIGMAS = ("Automatic", "Karras", "Exponential")

# A1111's order. DPM++ SDE is k-diffusion's 2nd-order single-step SDE sampler; diffusers' DPMSolverSDEScheduler
# needs torchsde (not in Colab), so the single-step DPM-Solver++ in its SDE form stands in for it.
_TABLE = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2},
            _SIGMAS, automatic="Karras"),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
            _SIGMAS, automatic="Karras"),
    Sampler("DPM++ SDE", "DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                          "lower_order_final": True}, _SIGMAS, automatic="Karras"),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("Euler", "EulerDiscreteScheduler", schedules=_SIGMAS),
    Sampler("LMS", "LMSDiscreteScheduler", needs="scipy"),
    Sampler("Heun", "HeunDiscreteScheduler", schedules=_SIGMAS),
    Sampler("DPM2", "KDPM2DiscreteScheduler", schedules=_SIGMAS, automatic="Karras"),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", schedules=_SIGMAS, automatic="Karras"),
    Sampler("DDIM", "DDIMScheduler"),
    Sampler("UniPC", "UniPCMultistepScheduler", schedules=_SIGMAS),
    Sampler("LCM", "LCMScheduler"),
)

SAMPLERS: list[str] = [s.name for s in _TABLE]
SCHEDULES: list[str] = list(_SIGMAS)
DEFAULT_SAMPLER = "DPM++ 2M"
DEFAULT_SCHEDULE = "Automatic"

_BY_KEY = {re.sub(r"[^a-z0-9+]", "", s.name.lower()): s for s in _TABLE}
# ComfyUI / kohya spellings users paste.
_ALIASES = {"eulera": "Euler a", "eulerancestral": "Euler a", "dpmpp2m": "DPM++ 2M", "dpmpp2msde": "DPM++ 2M SDE",
            "dpmppsde": "DPM++ SDE", "dpm2": "DPM2", "dpm2a": "DPM2 a", "dpm2ancestral": "DPM2 a", "unipc": "UniPC",
            "lms": "LMS", "ddim": "DDIM", "lcm": "LCM", "heun": "Heun", "euler": "Euler"}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", text.lower()).replace("_", "")


def resolve_sampler(name: Optional[str], schedule: Optional[str] = None, *,
                    pair: bool = True) -> tuple[Sampler, str]:
    """(sampler, schedule) from user spellings; "DPM++ 2M Karras" carries its schedule in the name.

    The returned schedule is a concrete one ("Normal", "Karras" or "Exponential"), never "Automatic". InputError
    for an unknown name, and (unless `pair` is False: names only, for models whose own scheduler ignores both)
    for a schedule the sampler cannot follow.
    """
    text = (name or DEFAULT_SAMPLER).strip()
    schedule_text = (schedule or DEFAULT_SCHEDULE).strip()
    for suffix in ("Karras", "Exponential"):
        if text.lower().endswith(" " + suffix.lower()) or text.lower().endswith("_" + suffix.lower()):
            text = text[: -len(suffix) - 1].strip()
            if schedule in (None, "", DEFAULT_SCHEDULE):
                schedule_text = suffix
    key = _key(text)
    sampler = _BY_KEY.get(key) or _BY_KEY.get(_key(_ALIASES.get(key, "")))
    if sampler is None:
        raise InputError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    wanted = {s.lower(): s for s in SCHEDULES + ["Normal"]}.get(schedule_text.lower())
    if wanted is None:
        raise InputError(f"unknown schedule type {schedule!r}: use one of {', '.join(SCHEDULES)}")
    if wanted == "Automatic":
        return sampler, sampler.automatic
    if pair and wanted != "Normal" and wanted not in sampler.schedules:
        raise InputError(f"{sampler.name} cannot follow the {wanted} schedule: use "
                         f"{' or '.join(sampler.schedules)}")
    return sampler, wanted


# A1111 counts two model calls per step for these (modules/sd_samplers_common.py `total_steps`); prompt-editing
# steps are counted on that total.
SECOND_ORDER = ("Heun", "DPM2", "DPM2 a", "DPM++ SDE")


def total_steps(sampler: Sampler, steps: int) -> int:
    """The step count A1111 schedules prompt editing on: twice `steps` for second-order samplers."""
    return steps * 2 if sampler.name in SECOND_ORDER else steps


def schedules_for(sampler_name: str) -> list[str]:
    """The schedule types the UI should offer next to a sampler."""
    return list(resolve_sampler(sampler_name)[0].schedules)
