"""CivitAI beyond one download: search and browse, model pages, images and their generation data, by-hash
look-ups, previews and update checks. Torch-free and widget-free; the panels and the CLI sit on top.

    from colab_sd.civitai import Client, SearchQuery, search
    page = search(Client(), SearchQuery.build("paper lantern", types=["lora"], base_models=["SDXL 1.0"]))
    for card in page.cards: print(card.name, card.type, card.downloads)

Modules: `client` (hosts, cache, politeness, auth), `catalog` (search, cards, access notes), `levels` (content
levels, thumbnail sizes), `images` (image pages, files' own metadata), `meta` (generation data → request fields
and resources), `local` (previews, identify, updates).
"""
from .catalog import Card, Page, SearchQuery, search
from .client import Client, clear_cache

__all__ = ["Client", "SearchQuery", "Card", "Page", "search", "clear_cache"]
