"""`colab-sd models [--dir DIR] [--type KIND] [--json] [--identify] [--updates]`: list the models library.

One line per model: kind, name, size, base model and trigger words (from the sidecars); `--json`
prints one JSON array instead. `--identify` first asks CivitAI, by sha256, about model files
whose sidecar has no CivitAI details (files from Drive, direct links, copied by hand) and records
their trigger words and base model (civitai.com and civitai.red are both asked, and a preview is saved);
`--updates` asks CivitAI whether a newer version of each CivitAI model exists.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..units import human_size
from .common import EXIT_FAILED, fail
from .download import kind_option


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("models", help="list the models library",
                              description="List the models under DIR: kind, name, size, base model, trigger words.")
    p.add_argument("--dir", dest="models_dir",
                   help="models root (default: $COLAB_SD_HOME, /content/models in Colab, ./models)")
    p.add_argument("--type", dest="kind", type=kind_option,
                   help="only this kind: checkpoint, lora, vae, embedding, controlnet, upscaler, other")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--identify", action="store_true",
                   help="look up files without CivitAI details on CivitAI by their sha256 and record their "
                        "trigger words and base model")
    p.add_argument("--updates", action="store_true",
                   help="ask CivitAI whether a newer version of each CivitAI model exists (one request per model)")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from ..library import list_models, models_root

    root = models_root(args.models_dir)
    if root.exists() and not root.is_dir():
        fail(f"{root} is a file, not a folder: give the models folder (--dir DIR)")
        return EXIT_FAILED
    kinds = [args.kind] if args.kind and args.kind != "auto" else None
    entries = list_models(root, kinds) if root.is_dir() else []
    if args.identify and entries:
        identify(entries)
        entries = list_models(root, kinds)
    if args.updates and entries:
        updates(entries)
        entries = list_models(root, kinds)
    probed = {e.path: _identify(e) for e in entries}  # family / variant from headers, also without a sidecar
    if args.json:
        extra = (lambda e: {"update": (e.meta.get("civitai") or {}).get("update")}) if args.updates else (lambda e: {})
        print(json.dumps([{**e.to_dict(), **probed[e.path], "family": e.meta.get("family") or probed[e.path]["family"],
                           **extra(e)} for e in entries], ensure_ascii=False))
        return 0
    if not entries:
        where = "" if root.is_dir() else " (the folder does not exist yet)"
        print(f"no models in {root}{where}; add one with: colab-sd download URL --dir {root}", file=sys.stderr)
        return 0
    rows = [(e.kind, e.name, human_size(e.size), _base_label(e, probed[e.path]),
             ", ".join(e.trigger_words) or "-") for e in entries]
    header = ("KIND", "NAME", "SIZE", "BASE MODEL", "TRIGGER WORDS")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    print(f"{len(entries)} model{'s' if len(entries) != 1 else ''} in {root}")
    return 0


def _base_label(entry, probed: dict) -> str:
    """The sidecar's base model, unless it names another family than the file's header (a mislabelled upload, a
    sidecar beside the wrong file): then the header's, which is what generation uses, with the sidecar's in
    brackets."""
    from ..civitai.resources import family_of

    said, label = entry.base_model, probed.get("family_label")
    if label and label.startswith("damaged"):  # a cut download: say so whatever its sidecar says
        return label
    header = probed.get("family")
    if said and label and header and family_of(said) not in (None, header):
        return f"{label} (sidecar: {said})"
    return said or label or "-"


def _identify(entry) -> dict:
    """{"family", "variant", "family_label"} of a model from its header (no torch, nothing loaded)."""
    from ..generation.families.identify import identify as from_header

    if entry.kind not in ("checkpoint", "lora", "vae", "text_encoder", "controlnet"):
        return {"family": None, "variant": None, "family_label": None}
    return from_header(entry.path, entry.meta)


def identify(entries) -> None:
    """Ask CivitAI (every host) about each model file whose sidecar has no CivitAI details; report on stderr."""
    from ..civitai import Client
    from ..civitai.local import identify as look_up

    for done in look_up(entries, Client()):
        entry = done.entry
        if done.found is None:
            print(f"not on CivitAI: {entry.kind}/{entry.name}", file=sys.stderr)
            continue
        info = done.found["civitai"]
        print(f"identified: {entry.kind}/{entry.name} = CivitAI {info.get('model_name')!r} "
              f"version {info.get('version_name')!r}", file=sys.stderr)


def updates(entries) -> None:
    """Say, on stderr, which CivitAI models have a newer version (recorded in the sidecars for the Library)."""
    from ..civitai import Client
    from ..civitai.local import updates as check

    for done in check(entries, Client()):
        name = f"{done.entry.kind}/{done.entry.name}"
        if done.note:
            print(f"could not check {name}: {done.note}", file=sys.stderr)
        elif done.newer:
            print(f"update: {name} {done.current.get('name')!r} → {done.newer['name']!r} "
                  f"({done.newer['base_model']}): {done.newer['url']}", file=sys.stderr)
        else:
            print(f"up to date: {name}", file=sys.stderr)
