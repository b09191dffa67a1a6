"""`colab-sd app`: the local notebook, the models folder next to it, and a real JupyterLab on 127.0.0.1."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupyterlab")

from colab_sd.library import KINDS  # noqa: E402
from colab_sd.cli import app as cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_prepare_writes_a_valid_notebook_and_the_models_folder_and_keeps_user_edits(tmp_path):
    notebook, models = cli.prepare(tmp_path / "studio")
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert "colab_sd.launch()" in nb.cells[1].source
    assert models == tmp_path / "studio" / "models" and sorted(p.name for p in models.iterdir()) == sorted(KINDS)
    notebook.write_text(notebook.read_text().replace("colab_sd.launch()", "colab_sd.launch()  # mine"))
    cli.prepare(tmp_path / "studio")
    assert "# mine" in notebook.read_text()


def test_lab_environment_points_kernels_at_the_models_and_keeps_callbacks_on_the_main_thread(tmp_path):
    env = cli.lab_environment(tmp_path, tmp_path / "models", base={"JUPYTER_CONFIG_PATH": "/elsewhere"})
    assert env["COLAB_SD_HOME"] == str(tmp_path / "models")
    first, rest = env["JUPYTER_CONFIG_PATH"].split(os.pathsep)
    assert rest == "/elsewhere"
    overrides = json.loads((Path(first) / "labconfig" / "default_setting_overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:kernels-settings"] == {"commsOverSubshells": "disabled"}


def test_app_command_serves_the_notebook_with_its_lab_defaults(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "cli-test-login"
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"), NO_PROXY="127.0.0.1,localhost")
    env.pop("COLAB_SD_HOME", None)
    proc = subprocess.Popen([sys.executable, "-m", "colab_sd.cli", "app", str(tmp_path / "studio"), "--no-browser",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)

    def get(path: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
        return json.loads(urllib.request.urlopen(request, timeout=5).read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                contents = get("/api/contents/colab_sd.ipynb?content=0")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "colab-sd app did not start"
                time.sleep(0.3)
        assert contents["type"] == "notebook"
        settings = get("/lab/api/settings/@jupyterlab/apputils-extension:kernels-settings")
        # The override becomes the schema default that the page uses (the user may still change it)
        assert settings["schema"]["properties"]["commsOverSubshells"]["default"] == "disabled"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert f"models   {tmp_path / 'studio' / 'models'}" in output
    assert (tmp_path / "studio" / "models" / "checkpoint").is_dir()


def test_app_on_a_file_is_one_sentence(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    out = subprocess.run([sys.executable, "-m", "colab_sd.cli", "app", str(a_file), "--no-browser"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLAB_SD_HOME": ""})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"colab-sd: error: {a_file} is a file, not a folder: choose another folder for "
                                  f"the notebook (colab-sd app FOLDER)")


@pytest.mark.parametrize("args,passed", [
    ([], ["studio"]),
    (["--no-browser", "--port", "8899"], ["studio", "--no-browser", "--port", "8899"]),
    (["--dir", "/data/models", "--no-browser"], ["studio", "--dir", "/data/models", "--no-browser"]),
    (["--port", "8899", "mine"], ["--port", "8899", "mine"]),
    (["mine", "--no-browser"], ["mine", "--no-browser"]),
])
def test_app_script_never_puts_the_notebook_in_the_repository_root(tmp_path, args, passed):
    """scripts/app.sh with options only: the folder is still ./studio (git-ignored). The set-up steps run against a
    stand-in virtual environment whose `colab-sd` records its arguments (the real command is tested above)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "args"
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")  # `pip install …` is not what is tested here
    (venv / "bin" / "colab-sd").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\n")
    for tool in ("python", "colab-sd"):
        (venv / "bin" / tool).chmod(0o755)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "app.sh"), *args], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "VENV": str(venv)})
    assert out.returncode == 0, out.stderr
    assert record.read_text().split("\n")[:-1] == ["app", *passed]
    assert "/studio/" in (ROOT / ".gitignore").read_text().split()
