"""The Layout block of docs/ARCHITECTURE.md, one line per module, from the tree and each module's docstring.

    python scripts/layout.py            # print the block
    python scripts/layout.py --write    # put it between the layout markers of docs/ARCHITECTURE.md
    python scripts/layout.py --check    # exit 1 (naming them) when the doc's modules and the tree's differ

A line is `path  lines  first sentence of the docstring` (two lines at most); a module without a docstring says so, so
that the doc shows what the code says about itself rather than what someone once wrote about it.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "colab_sd"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN, END = "<!-- layout:begin -->", "<!-- layout:end -->"
WIDTH = 118  # the repository's line length
_LINE = re.compile(r"^(colab_sd/\S+\.py)\b", re.MULTILINE)


def modules() -> list[Path]:
    """Every module of the package, packages first within a folder (their __init__ reads as the folder's title)."""
    return sorted(PACKAGE.rglob("*.py"), key=lambda p: (p.parent.relative_to(ROOT).parts, p.name != "__init__.py",
                                                        p.name))


def summary(path: Path) -> str:
    """The first sentence of the module's docstring (up to the first '.', ':' or ';' that ends a clause)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "(no docstring)"
    first = " ".join(doc.split("\n\n")[0].split())
    cut = re.search(r"(?<=[a-z0-9)`'\"])[.;](?=\s|$)", first)
    return first[:cut.start()] if cut else first


def block() -> str:
    rows = []
    for path in modules():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        head = f"{rel:<41}{lines:>4}  "
        wrapped = textwrap.wrap(summary(path), WIDTH - len(head), max_lines=2, placeholder=" …")
        rows.append(head + wrapped[0])
        rows += [" " * len(head) + more for more in wrapped[1:]]
    return "```\n" + "\n".join(rows) + "\n```"


def listed(doc_text: str) -> set[str]:
    """The module paths the doc's layout block lists."""
    if BEGIN not in doc_text or END not in doc_text:
        return set()
    part = doc_text[doc_text.index(BEGIN):doc_text.index(END)]
    return set(_LINE.findall(part))


def differences(doc_text: str) -> tuple[list[str], list[str]]:
    """(modules missing from the doc, modules the doc lists that are gone)."""
    tree = {p.relative_to(ROOT).as_posix() for p in modules()}
    doc = listed(doc_text)
    return sorted(tree - doc), sorted(doc - tree)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite the block in docs/ARCHITECTURE.md")
    p.add_argument("--check", action="store_true", help="compare the doc's modules with the tree's")
    args = p.parse_args(argv)
    if args.check:
        missing, gone = differences(DOC.read_text(encoding="utf-8"))
        for rel in missing:
            print(f"docs/ARCHITECTURE.md does not list {rel}: run python scripts/layout.py --write", file=sys.stderr)
        for rel in gone:
            print(f"docs/ARCHITECTURE.md lists {rel}, which is gone: run python scripts/layout.py --write",
                  file=sys.stderr)
        return 1 if missing or gone else 0
    text = block()
    if args.write:
        old = DOC.read_text(encoding="utf-8")
        DOC.write_text(old[:old.index(BEGIN) + len(BEGIN)] + "\n" + text + "\n" + old[old.index(END):],
                       encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
