"""`colab-sd app`: the notebook app outside Colab, in JupyterLab on 127.0.0.1.

It writes `colab_sd.ipynb` (one cell: `colab_sd.launch()`) into a folder, with the models folder
next to it, and starts JupyterLab there on the loopback interface (with Jupyter's own token login).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from .common import EXIT_FAILED, fail

NOTEBOOK_NAME = "colab_sd.ipynb"

_INTRO = ("# colab_sd\n\nRun the cell below (Shift+Enter). Tabs: **Download** (paste model links, one per line), "
          "**Library**, **Generate**, **Tokens**. To cancel a download, interrupt the kernel (■): the partial file "
          "is kept and the next Download resumes it.")
_CELL = "import colab_sd\napp = colab_sd.launch()"


def local_notebook() -> dict:
    """The local twin of the Colab notebook: the same app, without the install step."""
    return {
        "cells": [
            {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": _INTRO},
            {"cell_type": "code", "id": "app", "metadata": {}, "execution_count": None, "outputs": [], "source": _CELL},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def prepare(folder: Path, models_dir: Path | None = None) -> tuple[Path, Path]:
    """Create the notebook (kept if it exists: it may hold the user's own cells) and the models folder."""
    from ..library import ensure_layout, make_folder

    make_folder(folder, "folder for the notebook", "colab-sd app FOLDER")
    notebook = folder / NOTEBOOK_NAME
    if not notebook.exists():
        notebook.write_text(json.dumps(local_notebook(), indent=1) + "\n", encoding="utf-8")
    models = ensure_layout(models_dir or folder / "models")
    return notebook, models


# JupyterLab defaults for the app's own server (the user's settings still win). JupyterLab >= 4.4 sends widget
# messages to a kernel *subshell* thread when ipykernel 7 offers one; there the kernel's stop button cannot reach
# a running download (only the main thread gets KeyboardInterrupt). "disabled" keeps callbacks on the main
# thread, as in Colab, so stop cancels and keeps the partial file. No news pop-up over the app either.
LAB_DEFAULTS = {
    "@jupyterlab/apputils-extension:kernels-settings": {"commsOverSubshells": "disabled"},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def lab_config_dir(folder: Path) -> Path:
    """A Jupyter config dir holding LAB_DEFAULTS as `labconfig/default_setting_overrides.json`."""
    config = folder / ".colab_sd" / "jupyter"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(LAB_DEFAULTS, indent=1) + "\n",
                                                                         encoding="utf-8")
    return config


def lab_environment(folder: Path, models: Path, base: dict | None = None) -> dict:
    """The environment for JupyterLab and its kernels: the models folder and the lab defaults above."""
    env = dict(os.environ if base is None else base)
    env["COLAB_SD_HOME"] = str(models)  # the kernel's launch() then finds this models folder
    paths = [str(lab_config_dir(folder))] + [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(paths)
    return env


def jupyter_command(folder: Path, port: int, open_browser: bool) -> list[str]:
    cmd = [sys.executable, "-m", "jupyterlab", "--ip", "127.0.0.1", "--port", str(port),
           f"--ServerApp.root_dir={folder}", f"--LabApp.default_url=/lab/tree/{NOTEBOOK_NAME}"]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI runners are often root; Jupyter refuses root by default
    return cmd


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("app", help="open the notebook app locally (JupyterLab on 127.0.0.1)",
                       description="Write colab_sd.ipynb into FOLDER (models in FOLDER/models unless --dir) and open "
                                   "it in JupyterLab on 127.0.0.1. Run its cell to get the app.")
    p.add_argument("folder", nargs="?", default=".", help="where the notebook goes (default: the current folder)")
    p.add_argument("--dir", dest="models_dir", help="models root (default: FOLDER/models, or $COLAB_SD_HOME)")
    p.add_argument("--port", type=int, default=8888, help="JupyterLab port (default 8888; the next free one is used)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser (print the address instead)")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        fail("the app needs JupyterLab: pip install jupyterlab (or run bash scripts/app.sh, which sets everything up)")
        return EXIT_FAILED
    folder = Path(args.folder).expanduser().resolve()
    models_env = os.environ.get("COLAB_SD_HOME", "").strip()
    models = Path(args.models_dir or models_env or folder / "models").expanduser().resolve()
    notebook, models = prepare(folder, models)
    print(f"colab-sd: notebook {notebook}\ncolab-sd: models   {models}\n"
          f"colab-sd: starting JupyterLab on 127.0.0.1 (Ctrl-C to stop); run the notebook's cell to open the app",
          file=sys.stderr, flush=True)
    env = lab_environment(folder, models)
    server = subprocess.Popen(jupyter_command(folder, args.port, not args.no_browser), env=env)
    # Stopping this command stops JupyterLab too (and its kernels), whether by Ctrl-C or a SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        return 0
