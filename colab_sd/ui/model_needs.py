"""What a transformer-family model needs beside its own file, said under the Model dropdown before Generate is
pressed: the text encoders and VAE that the file holds itself (a bundle), that the library has (by file name), and
those that will be fetched on the first Generate: what, how big and from where (issue 11: never a silent multi-GB
fetch). Headers only, no torch: the widths that tell CLIP-L from CLIP-G come from the bundled config json.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .html import message

log = logging.getLogger("colab_sd.ui")


def needs_line(fam, entry, models_dir) -> str:
    """HTML for the panel ("" for SD families and diffusers folders, which carry their components)."""
    if fam is None or entry is None or not fam.is_transformer or Path(entry.path).is_dir():
        return ""
    from ..generation import components
    from ..generation.configs import BUNDLED, configs_root
    from ..generation.families import bundle

    # the folder the loader will use (assembled once, or the user's own), else the bundled json: same widths
    assembled = configs_root() / fam.config
    root, config = Path(models_dir), assembled if assembled.is_dir() else BUNDLED / fam.config
    try:
        inside = bundle.embedded(fam, entry.path)
        found, absent = [], []
        for comp in fam.components:
            if comp.role in inside:
                continue
            path = components.find(comp, root, config)
            (found if path is not None else absent).append((comp, path))
    except Exception:  # an unreadable header costs only this line; Generate says what is wrong
        log.debug("components of %s not checked", entry.path, exc_info=True)
        return ""
    parts = [f"{fam.name}:"]
    if inside:
        parts.append(", ".join(_short(c) for c in fam.components if c.role in inside) + " inside the file;")
    if found:
        parts.append(", ".join(f"{_short(c)} ({p.name})" for c, p in found) + " from the library;")
    if absent:
        comps = [c for c, _ in absent]
        where = sorted({f"{c.kind}/" for c in comps})
        parts.append(f"to fetch on the first Generate into {', '.join(where)}: {components.describe(comps)}")
        return message(" ".join(parts), "warn")
    parts[-1] = parts[-1].rstrip(";")
    return message(" ".join(parts) + " — nothing to fetch", "ok")


def _short(comp) -> str:
    """"T5-XXL text encoder (fp8, upcast on load)" → "T5-XXL text encoder"."""
    return comp.label.split(" (")[0]
