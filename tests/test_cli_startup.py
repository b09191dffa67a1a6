"""Every `colab-sd` command starts light: building the parser imports no generation code, torch or widgets."""
import subprocess
import sys

HEAVY = ("torch", "diffusers", "transformers", "ipywidgets", "IPython")


def test_parser_imports_neither_generation_nor_heavy_packages():
    """`colab-sd generate --help` needs the sampler names only: they come from the light `sampler_table`."""
    script = ("import sys; from colab_sd.cli import build_parser; build_parser()\n"
              f"print(sorted(m for m in sys.modules if m.startswith('colab_sd.generation') or m in {HEAVY!r}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_generate_help_lists_the_sampler_table():
    from colab_sd.generation import samplers
    from colab_sd.sampler_table import SAMPLERS, SCHEDULES, resolve_sampler

    out = subprocess.run([sys.executable, "-m", "colab_sd.cli", "generate", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    help_text = " ".join(out.stdout.split())  # argparse wraps lines
    assert f"one of: {', '.join(SAMPLERS)}" in help_text and f"one of: {', '.join(SCHEDULES)}" in help_text
    # generation.samplers re-exports the one table (no second copy to drift)
    assert samplers.SAMPLERS is SAMPLERS and samplers.resolve_sampler is resolve_sampler
    assert resolve_sampler("dpmpp_2m_karras")[0].scheduler == "DPMSolverMultistepScheduler"
