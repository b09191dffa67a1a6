"""The sampler and schedule names A1111 users know, mapped onto diffusers schedulers.

The table, `SAMPLERS`/`SCHEDULES` and `resolve_sampler` (which accepts the usual spellings: "euler_a", "dpmpp_2m",
"DPM++ 2M Karras") live in the light `colab_sd.sampler_table` and are re-exported here; `make_scheduler` builds a
fresh scheduler from the model's own scheduler config, so the model's training settings (betas, prediction type)
are kept.
"""
from __future__ import annotations

import inspect

from ..errors import GenerationError, InputError
from ..sampler_table import (DEFAULT_SAMPLER, DEFAULT_SCHEDULE, SAMPLERS, SCHEDULES, SECOND_ORDER, Sampler,
                             resolve_sampler, schedules_for, total_steps)

__all__ = ["Sampler", "SAMPLERS", "SCHEDULES", "DEFAULT_SAMPLER", "DEFAULT_SCHEDULE", "SECOND_ORDER",
           "resolve_sampler", "schedules_for", "total_steps", "make_scheduler"]


def make_scheduler(sampler: Sampler, schedule: str, base_config: dict):
    """A new diffusers scheduler for `sampler`, built on the model's scheduler config."""
    import diffusers

    cls = getattr(diffusers, sampler.scheduler)
    if cls.__module__.startswith("diffusers.utils.dummy"):
        raise GenerationError(f"the {sampler.name} sampler needs the {sampler.needs or 'missing'} package: "
                              f"pip install {sampler.needs or sampler.scheduler}, or pick another sampler")
    options = dict(sampler.options)
    if schedule == "Karras":
        options["use_karras_sigmas"] = True
    elif schedule == "Exponential":
        options["use_exponential_sigmas"] = True
    # Only what this scheduler takes: the rest of another scheduler's config would just be warned about.
    accepted = set(inspect.signature(cls.__init__).parameters)
    if base_config.get("rescale_betas_zero_snr") and "rescale_betas_zero_snr" not in accepted:
        # Dropping the key would sample the model on the wrong noise schedule, silently.
        raise InputError(f"this model is trained with zero terminal SNR, which diffusers' {sampler.name} sampler "
                         f"cannot follow: use Euler, Euler a, DPM++ 2M, DPM++ 2M SDE, DDIM or UniPC")
    config = {k: v for k, v in base_config.items()
              if (k in accepted or k.startswith("_")) and (not k.startswith("use_") or k == "use_flow_sigmas")}
    if sampler.scheduler.startswith("DPMSolver") and config.get("prediction_type") == "v_prediction":
        # DPM-Solver's last step is unstable with v-prediction at few steps; finishing with Euler fixes it.
        options.setdefault("euler_at_final", True)
    return cls.from_config(config, **options)
