"""`colab-sd generate --from IMAGE`: the image's settings, with every option given on the command line winning.

To tell "given" from "left at its default", `mark_defaults` turns the parser's number and text defaults into
subclasses of their type (they behave as the plain values everywhere else); a value that is one of those, None, or
an empty list was not given, and the image's value takes its place.
"""
from __future__ import annotations

import argparse
from typing import Callable

from ..errors import InputError


class _DefaultInt(int):
    pass


class _DefaultFloat(float):
    pass


class _DefaultStr(str):
    pass


_MARK = {int: _DefaultInt, float: _DefaultFloat, str: _DefaultStr}


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_image", metavar="IMAGE",
                        help="take prompt, negative, sampler, schedule, steps, CFG, seed, size, clip skip, model and "
                             "LoRAs from an image's metadata (A1111, CivitAI, ComfyUI, colab_sd); model and LoRAs are "
                             "found in the library by hash, then by name; options given here win")


def mark_defaults(parser: argparse.ArgumentParser) -> None:
    """Call last in `add_parser`, after every option exists."""
    defaults = {action.dest: parser.get_default(action.dest) for action in parser._actions}  # noqa: SLF001
    parser.set_defaults(**{dest: _MARK[type(value)](value) for dest, value in defaults.items()
                           if type(value) in _MARK and dest != "from_image"})


def given(value) -> bool:
    """True when an option's value came from the command line, not from its default."""
    return not (value is None or isinstance(value, tuple(_MARK.values())) or value == [])


def apply(image: str, fields: dict, models_dir, emit: Callable) -> dict:
    """`fields` (generate's keywords from the options) with the image's settings where no option was given.

    Emits one Info event per note and per missing resource. Raises InputError when the image's checkpoint is not
    in the library and no --model was given.
    """
    from ..events import Info
    from ..generation.reuse import request_from_parameters
    from ..infotext import read_parameters

    plan = request_from_parameters(read_parameters(image), models_dir)
    merged = dict(fields)
    for key, value in plan.fields.items():
        if not given(fields.get(key)):
            merged[key] = value
    for note in plan.notes:
        emit(Info(f"--from: {note}"))
    missing_model = [r for r in plan.missing if r.kind == "checkpoint"]
    if missing_model and not given(fields.get("model")):
        raise InputError(f"{image}: its model is not in the library ({missing_model[0].label()}): download it, "
                         f"or pass --model NAME to use another")
    for resource in plan.missing:
        if resource.kind != "checkpoint":
            emit(Info(f"--from: not in the library, left out: {resource.label()}"))
    if not merged.get("model"):
        raise InputError(f"{image} names no model: pass --model NAME")
    return merged
