"""A1111 infotext as text: the writer and the reader, one module so that what is written is what is read back.

    a photo of a cat <lora:film:0.8>
    Negative prompt: blurry
    Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, Model: dreamshaper_8

Facts (A1111 modules/infotext_utils.py `quote`, `unquote`, `parse_generation_parameters`; processing.py
`create_infotext`): the parameter line is the last line and only when at least 3 `Key: value` pairs are found in it;
a value holding a comma, colon or newline is written as a JSON string; a key is a word character followed by word
characters, spaces, `-` or `/`. A1111 matches pairs with one regex (`re_param`) that backtracks quadratically on a
long line without a `:`; `split_pairs` reads the same pairs in one linear pass. Where we differ, on purpose:
a value that is a JSON array or object (CivitAI's `Civitai resources: [...]`, `Hashes: {...}`) is taken whole and
decoded, where A1111 cuts it at its first comma; `Size` stays one `WxH` value (A1111 splits it into `Size-1`/`Size-2`).
"""
from __future__ import annotations

import json
from typing import Iterable, Optional

from ..errors import InputError

MAX_TEXT = 1 << 20  # characters; A1111 infotexts are a few KB, long prompts tens of KB
NEGATIVE = "Negative prompt:"
_KEY_EXTRA = frozenset(" -/")


# ---------------------------------------------------------------------------------------------- writing


def quote(value: object) -> str:
    """A1111's rule (a comma, colon or newline → a JSON string), plus `"`, so that a quoted name reads back as is."""
    text = str(value)
    if any(c in text for c in ',\n:"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_value(value: object) -> str:
    """One value as written: lists and dicts as JSON, floats short when that loses nothing, the rest `quote`d."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return quote(value)


def build_parameters(prompt: str, negative: str, params: dict) -> str:
    """The `parameters` text: the prompt, a "Negative prompt:" line when there is one, then `Key: value, …`.

    `params` is written in its order; None and "" values are left out. Stripped, as A1111 strips it.
    """
    pairs = [f"{key}: {format_value(value)}" for key, value in params.items() if value is not None and value != ""]
    negative_line = f"\n{NEGATIVE} {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{', '.join(pairs)}".strip()


def hash_list(items: Iterable[tuple[str, Optional[str]]]) -> Optional[str]:
    """`name: hash, …` (the `Lora hashes` / `TI hashes` value) for the items with a known hash, or None.

    A1111 removes `:` and `,` from the names so that the list reads back.
    """
    parts = [f"{name.replace(':', '').replace(',', '')}: {digest}" for name, digest in items if digest]
    return ", ".join(parts) or None


# ---------------------------------------------------------------------------------------------- reading


def parse_parameters(text: str) -> dict:
    """The inverse of `build_parameters`, as A1111's "PNG Info" reads it.

    Returns {"prompt", "negative_prompt", then each `Key: value` of the parameter line in order}. Values are
    strings as written (quoted ones unquoted), except JSON arrays/objects, which are decoded. Raises InputError
    for text over MAX_TEXT characters. Linear in the length of the text.
    """
    if not isinstance(text, str):
        raise InputError(f"infotext must be text, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise InputError(f"the parameters text is {len(text):,} characters; over {MAX_TEXT:,} it is not read "
                         f"(no generator writes that much: the file is damaged or not an infotext)")
    *lines, last = text.strip().split("\n")
    pairs = split_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE):
            in_negative = True
            line = line[len(NEGATIVE):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    for key, value in pairs:
        result[key] = value
    return result


def parse_hash_list(value: object) -> dict[str, str]:
    """`"name: hash, name2: hash"` (the `Lora hashes` / `TI hashes` value) as {name: hash}; a dict passes through."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for part in str(value or "").split(","):
        name, _, digest = part.strip().rpartition(":")
        if name.strip() and digest.strip():
            out[name.strip()] = digest.strip()
    return out


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def split_pairs(line: str) -> list[tuple[str, object]]:
    """The `Key: value` pairs of one parameter line, in one pass (what A1111's `re_param.findall` finds).

    A key is the run of word characters, spaces, `-` and `/` just before a `:`, starting at a word character, at
    least 2 long, and after the end of the previous pair; text that is not a pair is skipped, as the regex skips it.
    A value is a `"…"` JSON string, a JSON array/object, or everything up to the next comma.
    """
    pairs: list[tuple[str, object]] = []
    floor = search = 0  # floor: where the previous pair ended; a key never starts before it
    budget = [2 * len(line) + 4096]  # characters the JSON bracket scans may spend (keeps it linear)
    while True:
        colon = line.find(":", search)
        if colon < 0:
            return pairs
        start = colon
        while start > floor and (_is_word(line[start - 1]) or line[start - 1] in _KEY_EXTRA):
            start -= 1
        while start < colon and not _is_word(line[start]):
            start += 1
        if colon - start < 2:
            search = colon + 1
            continue
        value, end = _value(line, colon + 1, budget)
        pairs.append((line[start:colon].strip(), value))
        floor = search = end


def _value(line: str, at: int, budget: list) -> tuple[object, int]:
    """(value, index after it and its comma) for the value starting at `at` (after the key's colon)."""
    n = len(line)
    while at < n and line[at].isspace():
        at += 1
    if at < n and line[at] == '"':
        close = _closing_quote(line, at)
        if close > at + 1 and (close + 1 == n or line[close + 1] == ","):
            raw = line[at:close + 1]
            try:
                return json.loads(raw), close + 2
            except ValueError:  # A1111 keeps a value it cannot unquote as it is
                return raw, close + 2
    if at < n and line[at] in "[{" and budget[0] > 0:
        close = _closing_bracket(line, at, budget)
        if close > 0 and (close + 1 == n or line[close + 1] == ","):
            budget[0] -= close - at  # json.loads reads it once more
            try:
                return json.loads(line[at:close + 1]), close + 2
            except (ValueError, RecursionError):
                pass
    comma = line.find(",", at)
    end = n if comma < 0 else comma
    return _unquote(line[at:end]), (n if comma < 0 else comma + 1)


def _unquote(value: str) -> object:
    """A1111's `unquote`: a value that starts and ends with `"` is JSON-decoded when it can be; any other value
    loses its trailing spaces (A1111 keeps them; no writer puts them there on purpose)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value.rstrip()


def _closing_quote(line: str, at: int) -> int:
    """Index of the `"` that ends the JSON string opened at `at`, or -1. Backslash escapes one character."""
    i, n = at + 1, len(line)
    while i < n:
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i
        i += 1
    return -1


def _closing_bracket(line: str, at: int, budget: list) -> int:
    """Index of the bracket that closes the one at `at` (JSON strings skipped), or -1; spends `budget`."""
    depth, i, n = 0, at, len(line)
    limit = min(n, at + budget[0])
    found = -1
    while i < limit:
        char = line[i]
        if char == '"':
            i = _closing_quote(line, i)
            if i < 0:
                i = n
                break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                found = i
                break
        i += 1
    budget[0] -= i - at + 1
    return found
