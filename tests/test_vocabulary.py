"""One vocabulary: a word of the field has one home, and every part of colab_sd says it the same way."""
import ast
from pathlib import Path

from colab_sd.generation import families
from colab_sd.probe import FAMILY_NAMES, Probe

PACKAGE = Path(__file__).resolve().parent.parent / "colab_sd"


def test_family_labels_come_from_the_probe_table():
    for fam in families.REGISTRY.values():
        assert fam.label == FAMILY_NAMES[fam.id] == families.label(fam.id)
    assert families.lookup("sd1").name == "SD1.x" and families.lookup("flux", "schnell").name == "Flux schnell"
    assert families.lookup("sd3", "3.5-large").name == "SD3.5 Large"  # a variant may still name itself


def test_probe_summary_and_registry_say_the_same_words():
    probe = Probe(kind="lora", family="sd1", variant=None, format="safetensors")
    assert probe.summary == f"{families.label('sd1')} LoRA (safetensors)" == "SD1.x LoRA (safetensors)"


def test_no_second_table_of_family_labels():
    """No module but probe/result.py writes a {"sd1": "SD…"} table (a second one drifted: "SD1" vs "SD1.x")."""
    tables = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                pairs = {k.value: v.value for k, v in zip(node.keys, node.values)
                         if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
                if str(pairs.get("sd1", "")).startswith("SD") or str(pairs.get("sdxl", "")).startswith("SD"):
                    tables.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(tables) == 1 and tables[0].startswith("probe/result.py:"), tables
