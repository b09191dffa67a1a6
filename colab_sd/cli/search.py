"""`colab-sd search QUERY [--type T] [--base B] [--sort S] [--period P] [--nsfw LEVEL] [--limit N] [--json]`:
CivitAI's model search from the command line; the next page with `--cursor` (printed at the end).

Light: no torch, no ipywidgets. Each result's link (`civitai.com/models/ID?modelVersionId=V`) downloads with
`colab-sd download`.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from .common import EXIT_OK, EXIT_USAGE, fail


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "search", help="search CivitAI for models",
        description="Search CivitAI's models (checkpoints, LoRAs, embeddings, VAEs…); prints one line per model with "
                    "a link that `colab-sd download` takes.",
        epilog="content levels: PG (default), PG13, R, X, XXX; an image above the level is never shown or used "
               "as a preview. Works without a token; CIVITAI_TOKEN is sent (as a header) when set.")
    p.add_argument("query", nargs="?", default="", help="words to search for (empty: browse)")
    p.add_argument("--type", dest="types", action="append", default=[], metavar="T",
                   help="checkpoint, lora, locon, dora, embedding, vae, controlnet, upscaler (repeatable)")
    p.add_argument("--base", dest="bases", action="append", default=[], metavar="B",
                   help="base model as CivitAI names it: 'SD 1.5', 'SDXL 1.0', Pony, Illustrious, 'Flux.1 D'… "
                        "(repeatable)")
    p.add_argument("--sort", help="rating (default), downloads, liked, newest, oldest, or a CivitAI sort name")
    p.add_argument("--period", help="AllTime (default), Year, Month, Week, Day")
    p.add_argument("--nsfw", dest="level", default="PG", metavar="LEVEL", help="highest content level: PG (default), "
                                                                                "PG13, R, X, XXX")
    p.add_argument("--limit", type=int, default=20, help="results per page, 1-100 (default 20)")
    p.add_argument("--cursor", help="the next page (printed after the results)")
    p.add_argument("--json", action="store_true", help="print one JSON object (items, next_cursor)")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from ..civitai import Client, SearchQuery, search

    try:  # a bad --type/--sort/--period/--nsfw/--limit is a usage error (exit 2), as argparse's own
        query = SearchQuery.build(args.query, types=args.types, base_models=args.bases, sort=args.sort,
                                  period=args.period, level=args.level, limit=args.limit, cursor=args.cursor)
    except InputError as err:
        fail(err)
        return EXIT_USAGE
    page = search(Client(), query)
    rows = []
    for card in page.cards:
        version = next(iter(card.raw.get("modelVersions") or []), {})
        link = f"{page.base}/models/{card.id}" + (f"?modelVersionId={version['id']}" if version.get("id") else "")
        rows.append((card, link))
    if args.json:
        print(json.dumps({"items": [{**card.to_dict(), "url": link} for card, link in rows],
                          "next_cursor": page.next_cursor}, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no models found; try fewer filters (a short --period with a query often finds nothing)",
              file=sys.stderr)
        return EXIT_OK
    for card, link in rows:
        base = ", ".join(card.base_models[:2]) or "?"
        print(f"{card.type:<16} {base:<16} ⬇{card.downloads:<8} ♥{card.thumbs_up:<6} {card.name}")
        print(f"{'':<16} {link}")
    if page.next_cursor:
        print(f"more: colab-sd search {_quoted(args.query)} … --cursor {page.next_cursor}", file=sys.stderr)
    return EXIT_OK


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(text) if text else "''"
