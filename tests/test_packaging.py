"""Installing the package: no setuptools warnings (there were 21, one per bundled config folder), and the data
files and the CLI package are in what gets installed."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_build_is_quiet_and_complete(tmp_path):
    out = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stdout + out.stderr, out.stderr[:2000]
    built = tmp_path / "colab_sd"
    bundled = sorted(p.relative_to(ROOT / "colab_sd") for p in (ROOT / "colab_sd/generation/configs").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    assert bundled and all((built / rel).is_file() for rel in bundled)
    assert (built / "cli" / "__main__.py").is_file() and (built / "_version.py").is_file()
    assert not list(built.rglob("__pycache__"))
