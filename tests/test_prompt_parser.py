"""A1111 prompt syntax, parsed as A1111 does: every conformance case of the parity reference (§1, §8), no torch.

The expected pieces and weights are A1111's (modules/prompt_parser.py doctests and the reference's table,
obtained by running A1111's own parser); the chunk cases use the real CLIP tokenizer colab_sd ships.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from colab_sd.errors import InputError
from colab_sd.generation.prompt import extract_loras
from colab_sd.generation.prompt_parser import at_step, parse_prompt_attention, prompt_schedule, split_and


def rounded(pieces):
    return [(text, round(weight, 4)) for text, weight in pieces]


# ---------------------------------------------------------------------------------------------- §8.1 / §8.2


def test_the_a1111_doctest_prompt_gives_its_nine_pieces_with_exact_floats():
    assert parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]


@pytest.mark.parametrize("prompt,pieces", [
    ("a cat", [("a cat", 1.0)]),
    ("(cat)", [("cat", 1.1)]),
    ("((cat))", [("cat", 1.21)]),
    ("(((cat)))", [("cat", 1.331)]),
    ("[cat]", [("cat", 0.9091)]),
    ("[[cat]]", [("cat", 0.8264)]),
    ("(cat:1.5)", [("cat", 1.5)]),
    ("(cat: 1.5)", [("cat", 1.5)]),
    ("(cat:1.5 )", [("cat", 1.5)]),
    ("(cat :1.5)", [("cat ", 1.5)]),
    ("((cat:1.5))", [("cat", 1.65)]),
    ("[(cat:1.5)]", [("cat", 1.3636)]),
    ("(cat:-0.5)", [("cat", -0.5)]),
    ("(cat:.5)", [("cat", 0.5)]),
    ("(cat:+1.5)", [("cat", 1.5)]),
    ("a (red:1.2) (big:0.8) dog", [("a ", 1.0), ("red", 1.2), (" ", 1.0), ("big", 0.8), (" dog", 1.0)]),
    ("(a (b) c)", [("a ", 1.1), ("b", 1.21), (" c", 1.1)]),
    ("(a [b] c)", [("a ", 1.1), ("b", 1.0), (" c", 1.1)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("[unbalanced", [("unbalanced", 0.9091)]),
    ("unbalanced)", [("unbalanced)", 1.0)]),
    ("a ] b", [("a ] b", 1.0)]),
    ("\\(literal\\)", [("(literal)", 1.0)]),
    ("(\\(x\\):1.2)", [("(x)", 1.2)]),
    ("\\(cat:1.5\\)", [("(cat:1.5)", 1.0)]),
    ("(cat)(dog)", [("catdog", 1.1)]),
    ("(cat) (dog)", [("cat", 1.1), (" ", 1.0), ("dog", 1.1)]),
    ("(a:b)", [("a:b", 1.1)]),
    ("(a:1.2:1.3)", [("a:1.2", 1.3)]),
    ("(cat:1e2)", [("cat:1e2", 1.1)]),
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("aBREAKb", [("aBREAKb", 1.0)]),
    ("a BREAK", [("a", 1.0), ("BREAK", -1.0), ("", 1.0)]),
    ("(a BREAK b:1.2)", [("a", 1.2), ("BREAK", -1.2), ("b", 1.2)]),
    ("", [("", 1.0)]),
    ("()", [("", 1.0)]),
    ("(:1.5)", [("", 1.0)]),
    ("[cat]:1.5", [("cat", 0.9091), (":1.5", 1.0)]),
    ("<lora:x:0.8> a cat", [("<lora:x:0.8> a cat", 1.0)]),
    ("a \\ b", [("a  b", 1.0)]),  # A1111 drops a lone backslash (its regex matches it as an escape of nothing)
])
def test_emphasis_pieces_match_a1111(prompt, pieces):
    assert rounded(parse_prompt_attention(prompt)) == pieces


@pytest.mark.parametrize("prompt", ["(cat:1.5.5)", "(cat:.)", "a (b:1..2) c"])
def test_a_weight_that_is_not_a_number_is_one_clear_line(prompt):
    with pytest.raises(InputError) as err:
        parse_prompt_attention(prompt)
    assert "is not a number" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- §8.5 schedules


def calls(schedule, n):
    return [schedule[at_step(schedule, s)][1] for s in range(n)]


def test_prompt_editing_switches_at_the_step_and_counts_calls_as_a1111():
    schedule = prompt_schedule("a [cat:dog:10] x", 20)
    assert schedule == [(10, "a cat x"), (20, "a dog x")]
    assert calls(schedule, 20).count("a cat x") == 11  # calls 0..10 use the first text
    assert prompt_schedule("a [cat:dog:0.25] x", 20) == [(5, "a cat x"), (20, "a dog x")]
    assert prompt_schedule("a [cat:dog:1.0] x", 20) == [(20, "a cat x")]  # a fraction of 1.0 never switches
    assert prompt_schedule("a [cat:dog:1] x", 20) == [(1, "a cat x"), (20, "a dog x")]
    assert prompt_schedule("[cat:1.5]", 20) == [(20, "")]
    assert prompt_schedule("a [cat::5]", 20) == [(5, "a cat"), (20, "a ")]
    assert prompt_schedule("a [cat:5]", 20) == [(5, "a "), (20, "a cat")]


def test_alternation_cycles_every_call():
    assert calls(prompt_schedule("[a|b]", 10), 10) == ["a", "a", "b", "a", "b", "a", "b", "a", "b", "a"]
    assert [text for _, text in prompt_schedule("[fe|]male", 3)] == ["female", "male", "female"]


def test_hires_offsets_as_a1111():
    assert prompt_schedule("a [b:c:1.5]", 20) == [(20, "a b")]
    assert prompt_schedule("a [b:c:1.5]", 20, hires_steps=10) == [(5, "a b"), (10, "a c")]
    assert prompt_schedule("a [b:c:25]", 20, hires_steps=10) == [(5, "a b"), (10, "a c")]
    assert prompt_schedule("a [b:c:0.5]", 20, old_timelines=True) == [(10, "a b"), (20, "a c")]


def test_what_the_grammar_rejects_is_one_entry_unchanged():
    assert prompt_schedule("a [unbalanced", 20) == [(20, "a [unbalanced")]
    assert prompt_schedule("a | [b:c:3]", 5) == [(5, "a | [b:c:3]")]  # `|` outside brackets: no schedule at all
    assert prompt_schedule("(" * 5000, 20) == [(20, "(" * 5000)]


def test_schedules_keep_emphasis_and_nest():
    assert prompt_schedule("((a [b:c:2]))", 4) == [(2, "((a b))"), (4, "((a c))")]
    assert prompt_schedule("[(x:1.2):[y|z]:2]", 4) == [(1, "(x:1.2)"), (2, "(x:1.2)"), (3, "y"), (4, "z")]
    assert prompt_schedule("(x:1.3) \\[a:b:2\\]", 4) == [(4, "(x:1.3) \\[a:b:2\\]")]


# ---------------------------------------------------------------------------------------------- §8.6 AND


def test_and_splits_the_positive_prompt_with_weights():
    assert split_and("a cat AND a dog :0.5 AND (red:1.2)") == [("a cat", 1.0), (" a dog", 0.5),
                                                              (" (red:1.2)", 1.0)]
    assert split_and("a cat and a dog") == [("a cat and a dog", 1.0)]
    assert split_and("a cat :0.8") == [("a cat", 0.8)]


# ---------------------------------------------------------------------------------------------- LoRA tags


def test_lora_tags_leave_the_text_around_them_as_a1111():
    text, specs = extract_loras("<lora:detail:0.8>, a cat <lora:style>")
    assert text == ", a cat " and [(s.name, s.weight) for s in specs] == [("detail", 0.8), ("style", 1.0)]


def test_the_parser_imports_no_torch():
    code = ("import sys, colab_sd.generation.prompt_parser as p; p.prompt_schedule('[a|b] (c:1.2)', 4); "
            "bad = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
