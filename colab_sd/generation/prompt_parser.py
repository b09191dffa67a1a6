"""A1111 prompt syntax, parsed the way A1111 parses it (pure Python: no torch, tested without it).

Three steps, in A1111's order (modules/prompt_parser.py of AUTOMATIC1111/stable-diffusion-webui v1.6–1.10;
Forge's copy is identical):

1. `split_and(prompt)` — composable diffusion: `a cat AND a dog :0.5` → [("a cat", 1.0), (" a dog", 0.5)]
   (`get_multicond_prompt_list`). Only positive prompts are split.
2. `prompt_schedule(prompt, steps)` — prompt editing `[from:to:when]` and alternation `[a|b]`:
   [(end_step, text), …] (`get_learned_conditioning_prompt_schedules`). The text of the first entry whose
   end_step ≥ s is used at sampler call s (s counts from 0).
3. `parse_prompt_attention(text)` — emphasis: [(piece, weight), …] with `BREAK` markers ("BREAK", -1.0).

The schedule grammar (A1111 uses a lark Earley grammar) is parsed here by recursive descent with backtracking;
every construct that is not a schedule or an alternation is kept as its original text, so the two agree on
every prompt whose meaning does not depend on how an ambiguous parse is resolved (see the README's notes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import InputError

ROUND = 1.1  # A1111: `(x)` multiplies by 1.1
SQUARE = 1 / 1.1  # `[x]` divides by 1.1
BREAK = ("BREAK", -1.0)  # the chunk-break marker; only an exact -1 weight breaks (inside brackets it is a word)

# ------------------------------------------------------------------------------------------------ emphasis

_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Pieces of text with their emphasis weights, exactly as A1111's `parse_prompt_attention`.

    `(x)` ×1.1, `[x]` ÷1.1, `(x:1.3)` ×1.3, nesting multiplies (in floats: `((x))` = 1.2100000000000002);
    `\\(` `\\)` `\\[` `\\]` `\\\\` are the literal characters and a lone backslash is dropped; a closer with nothing
    open is text; openers left open apply their factor to the end; `BREAK` (the word, upper case) becomes
    ("BREAK", -1.0). Adjacent pieces of equal weight are joined; an empty result is [("", 1.0)].
    Raises InputError for a weight that is not a number (`(x:1.5.5)`), where A1111 fails the generation.
    """
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(res))
        elif piece == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _weight(weight, piece))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    res.append(list(BREAK))
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not res:
        return [("", 1.0)]
    merged = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(text_, weight_) for text_, weight_ in merged]


def _weight(value: str, piece: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"emphasis weight {piece.strip()!r} is not a number: write it like (word:1.2)") from None


# ------------------------------------------------------------------------------------------------ AND

_AND = re.compile(r"\bAND\b")
_PART_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """A positive prompt's composable-diffusion parts: split on the word AND, each part's trailing `:w` read as its
    weight (default 1.0). A prompt without AND is one part (whose trailing `:w`, if any, is still a weight)."""
    parts = []
    for sub in _AND.split(prompt):
        match = _PART_WEIGHT.search(sub)
        text, weight = match.groups() if match else (sub, None)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


# ------------------------------------------------------------------------------------------------ schedules
# Grammar (A1111's, in lark):
#   start: (prompt | /[][():]/+)*
#   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
#   emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
#   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
#   alternate: "[" prompt ("|" [prompt])+ "]"
#   plain: /([^\\\[\]():|]|\\.)+/          NUMBER: lark's SIGNED_NUMBER


@dataclass(frozen=True)
class _Scheduled:
    before: Optional[tuple]  # None for `[to:when]`
    after: tuple
    when: str  # the number as written ("10", "0.25")


@dataclass(frozen=True)
class _Alternate:
    options: tuple  # of node tuples


_Node = Union[str, _Scheduled, _Alternate]
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+", re.S)
_WHEN = re.compile(r"\s*([+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))\s*\]")


def _prompt(s: str, i: int) -> tuple[tuple, int]:
    """The longest `prompt` at i: plain text and bracket constructs; stops before anything else."""
    nodes: list[_Node] = []
    while i < len(s):
        plain = _PLAIN.match(s, i)
        if plain:
            nodes.append(plain.group(0))
            i = plain.end()
            continue
        found = _round(s, i) if s[i] == "(" else _square(s, i) if s[i] == "[" else None
        if found is None:
            break
        node, i = found
        nodes.extend(node) if isinstance(node, tuple) else nodes.append(node)
    return tuple(nodes), i


def _round(s: str, i: int):
    inner, j = _prompt(s, i + 1)
    if j < len(s) and s[j] == ")":
        return ("(",) + inner + (")",), j + 1
    if j < len(s) and s[j] == ":":
        second, k = _prompt(s, j + 1)
        if k < len(s) and s[k] == ")":
            return ("(",) + inner + (":",) + second + (")",), k + 1
    return None


def _square(s: str, i: int):
    first, j = _prompt(s, i + 1)
    if j >= len(s):
        return None
    if s[j] == "]":
        return ("[",) + first + ("]",), j + 1
    if s[j] == "|":
        options = [first]
        while j < len(s) and s[j] == "|":
            option, j = _prompt(s, j + 1)
            options.append(option)
        if j < len(s) and s[j] == "]":
            return _Alternate(tuple(options)), j + 1
        return None
    if s[j] != ":":
        return None
    when = _WHEN.match(s, j + 1)
    if when:  # [to:when]
        return _Scheduled(None, first, when.group(1)), when.end()
    second, k = _prompt(s, j + 1)
    if k < len(s) and s[k] == ":":
        when = _WHEN.match(s, k + 1)
        if when:
            return _Scheduled(first, second, when.group(1)), when.end()
    return None


def _parse_schedule(prompt: str) -> Optional[tuple]:
    """The tree of `start`, or None where A1111's grammar rejects the prompt (then it is used as it is)."""
    nodes: list[_Node] = []
    i = 0
    while i < len(prompt):
        part, j = _prompt(prompt, i)
        nodes.extend(part)
        if j < len(prompt):
            if prompt[j] not in "[]():":
                return None  # a `|` outside brackets, or a lone backslash at the end
            nodes.append(prompt[j])  # an unmatched bracket or colon: text
            j += 1
        i = j
    return tuple(nodes)


def _when(node: _Scheduled, steps: int, int_offset: int, float_offset: float, old: bool) -> int:
    value = float(node.when)
    if old:
        value = value * steps if value < 1 else value
    elif "." in node.when:
        value = (value - float_offset) * steps
    else:
        value = value - int_offset
    return min(steps, int(value))


def _walk(nodes: tuple):
    for node in nodes:
        yield node
        if isinstance(node, _Scheduled):
            yield from _walk(node.before or ())
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            for option in node.options:
                yield from _walk(option)


def _text_at(nodes: tuple, step: int, when) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            out.append(_text_at(node.before or (), step, when) if step <= when(node) else
                       _text_at(node.after, step, when))
        else:
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step, when))
    return "".join(out)


def prompt_schedule(prompt: str, steps: int, hires_steps: Optional[int] = None,
                    old_timelines: bool = False) -> list[tuple[int, str]]:
    """[(end_step, text), …] for a prompt at `steps` sampler steps, as A1111's
    `get_learned_conditioning_prompt_schedules` (A1111 ≥ 1.6 "new timelines" unless `old_timelines`).

    `when` with a "." is a fraction of the steps, otherwise an absolute step; truncated, capped at `steps`.
    For a hires pass, `steps` is the first pass's count and `hires_steps` the second's: integer `when` is offset
    by `steps`, fractional ones by 1.0. A prompt the grammar rejects is one entry, unchanged.
    Examples (20 steps): `a [cat:dog:10] x` → [(10, "a cat x"), (20, "a dog x")]; `[a|b]` at 10 steps alternates.
    """
    if hires_steps is None or old_timelines:
        int_offset, float_offset, total = 0, 0.0, steps
    else:
        int_offset, float_offset, total = steps, 1.0, hires_steps
    try:
        tree = _parse_schedule(prompt)
    except RecursionError:  # brackets nested hundreds deep: no schedule, as for any prompt the grammar rejects
        tree = None
    if tree is None:
        return [(total, prompt)]

    def when(node: _Scheduled) -> int:
        return _when(node, total, int_offset, float_offset, old_timelines)

    ends = {total}
    for node in _walk(tree):
        if isinstance(node, _Scheduled) and when(node) >= 1:
            ends.add(when(node))
        elif isinstance(node, _Alternate):
            ends.update(range(1, total + 1))
    return [(end, _text_at(tree, end, when)) for end in sorted(ends)]


def at_step(schedule: list[tuple[int, str]], step: int) -> int:
    """Index of the schedule entry used at sampler call `step` (from 0), as A1111's `reconstruct_cond_batch`."""
    for index, (end, _) in enumerate(schedule):
        if step <= end:
            return index
    return len(schedule) - 1


def check_prompt(prompt: str, steps: int) -> None:
    """Raise InputError now (before any model loads) for what would fail later: a weight that is not a number."""
    for _, text in prompt_schedule(prompt, steps):
        parse_prompt_attention(text)
