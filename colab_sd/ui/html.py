"""Small HTML snippets for the panels' messages (ipywidgets 7's Label cannot be coloured; HTML can)."""
from __future__ import annotations

from html import escape

COLORS = {"ok": "#1b7f3b", "error": "#b3261e", "warn": "#8a5a00", "muted": "#5f6368", "info": "#1a5fb4"}


def message(text: str, tone: str = "muted") -> str:
    return f'<span style="color:{COLORS[tone]}">{escape(str(text))}</span>'


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table whose cells are escaped text."""
    head = "".join(f'<th style="text-align:left;padding:2px 12px 2px 0">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="padding:2px 12px 2px 0;vertical-align:top">{escape(str(c))}</td>' for c in row) + "</tr>"
        for row in rows)
    return f'<table style="border-collapse:collapse;font-size:13px"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
