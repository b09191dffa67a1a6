"""The Generate panel's last-used settings, kept as a small JSON file in the models root.

Why the models root: on Drive it survives the Colab runtime together with the models it names.
Unknown keys and unreadable files are ignored: a stale file must never stop the app from opening.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("colab_sd.ui")

FILENAME = "colab_sd_settings.json"


def settings_path(models_dir: os.PathLike | str) -> Path:
    return Path(models_dir) / FILENAME


def load(models_dir: os.PathLike | str) -> dict:
    """The saved settings, or {} when there are none (or they cannot be read)."""
    try:
        data = json.loads(settings_path(models_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(models_dir: os.PathLike | str, settings: dict) -> Path:
    """Write the settings atomically (a crash mid-write leaves the previous file)."""
    path = settings_path(models_dir)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(settings, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        log.warning("could not save the generate settings to %s", path, exc_info=True)
    return path
