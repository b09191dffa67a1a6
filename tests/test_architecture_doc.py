"""docs/ARCHITECTURE.md agrees with the code: every module is in its layout, and the import rules it states hold."""
import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "colab_sd"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

# The download core: what `colab-sd download` runs. It must never reach the generation package, the faces or the
# heavy libraries, eagerly or inside a function.
DOWNLOAD_CORE = ["api", "transfer", "partfile", "receive", "segments", "segment_runner", "place", "http", "names",
                 "lock", "remote", "library", "tokens", "hosts", "units", "hashing", "errors", "events", "sources",
                 "probe", "_version", "sampler_table"]
# The bottom: vocabulary every layer may import; it imports nothing of colab_sd but errors.
BOTTOM = {"_version": set(), "errors": {"tokens"}, "units": set(), "hashing": set(), "sampler_table": {"errors"}}


def layout_script():
    spec = importlib.util.spec_from_file_location("layout", ROOT / "scripts" / "layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imports(path: Path) -> set[str]:
    """Every colab_sd module `path` imports, at module level or inside a function (relative imports resolved)."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from (an __init__'s own folder too)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found |= {target} if node.module else {f"{target}.{a.name}" for a in node.names}
            else:
                found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def part(path: Path) -> str:
    """`colab_sd/sources/civitai.py` → "sources"; `colab_sd/api.py` → "api"."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def test_layout_lists_every_module_and_no_other():
    missing, gone = layout_script().differences(DOC.read_text(encoding="utf-8"))
    assert not missing, f"add them with `python scripts/layout.py --write`: {missing}"
    assert not gone, f"the doc lists modules that are gone (`python scripts/layout.py --write`): {gone}"


def test_readme_links_the_design_doc():
    assert "docs/ARCHITECTURE.md" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if part(p) in DOWNLOAD_CORE),
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_download_core_never_reaches_generation_faces_or_heavy_libraries(path):
    bad = {m for m in imports(path)
           if m.split(".")[0] in ("torch", "diffusers", "transformers", "ipywidgets", "IPython")
           or m.startswith(("colab_sd.generation", "colab_sd.ui", "colab_sd.cli"))}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_core_module_imports_the_faces():
    for path in PACKAGE.rglob("*.py"):
        if part(path) in ("ui", "cli", "__init__"):
            continue  # the faces themselves, and the package face (`colab_sd.launch()` opens the app)
        bad = {m for m in imports(path) if m.startswith(("colab_sd.ui", "colab_sd.cli"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(BOTTOM))
def test_the_bottom_imports_only_the_bottom(name):
    ours = {m.split(".")[1] for m in imports(PACKAGE / f"{name}.py") if m.startswith("colab_sd.")}
    assert ours <= BOTTOM[name], f"colab_sd/{name}.py imports {sorted(ours - BOTTOM[name])}"
