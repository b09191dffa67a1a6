"""Hosts: Kaggle before Colab, each host's folders and secrets, on simulated hosts.

Kaggle is simulated as the real one looks to a kernel: its environment variables (plus Colab's release tag, since
Kaggle's image is built from Colab's, and an importable `google.colab`), its folders under a temporary root, and a
`kaggle_secrets` module on sys.path whose `UserSecretsClient` raises the real error classes
(docker-python's kaggle_secrets / kaggle_web_client: CredentialError, BackendError, ValidationError, and the
builtin ConnectionError when the notebook's internet is off).
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from colab_sd import hosts, library, tokens
from colab_sd.generation import metadata

FAKE_KAGGLE_SECRETS = '''
"""Stand-in for Kaggle's kaggle_secrets: the same constructor and get_secret contract and error classes."""
import json, os


class CredentialError(Exception):
    pass


class BackendError(Exception):
    pass


class ValidationError(Exception):
    pass


class UserSecretsClient:
    def __init__(self):
        if not os.environ.get("KAGGLE_USER_SECRETS_TOKEN"):
            raise CredentialError("A JWT Token is required to use the UserSecretsClient, "
                                  "but none found in environment variable KAGGLE_USER_SECRETS_TOKEN")

    def get_secret(self, label):
        if not label:
            raise ValidationError("Label must be non-empty.")
        with open(os.environ["FAKE_KAGGLE_STATE"]) as fh:
            state = json.load(fh)
        state["calls"] = state.get("calls", 0) + 1
        with open(os.environ["FAKE_KAGGLE_STATE"], "w") as fh:
            json.dump(state, fh)
        if state.get("offline"):
            raise ConnectionError("Timeout error trying to communicate with service. Please ensure internet is on.")
        if label not in state["attached"]:
            raise BackendError("Unexpected response from the service. Response: {'wasSuccessful': False}.")
        return state["attached"][label]
'''

TOKEN_NAMES = ("CIVITAI_TOKEN", "CIVITAI_API_TOKEN", "CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    """No host variables from the machine running the tests; no remembered secret problems."""
    import os

    for key in list(os.environ):
        if key.startswith(("KAGGLE_", "COLAB_", "VSCODE_")) or key in TOKEN_NAMES or key == "VERTEX_PRODUCT":
            monkeypatch.delenv(key)
    hosts.forget_problems()
    yield
    hosts.forget_problems()


class Kaggle:
    """A simulated Kaggle session under `root`; `attach()`, `offline()` change what its secrets service says."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.state = root / "kaggle", root / "kaggle_state.json"
        (self.root / "working").mkdir(parents=True)
        (self.root / "input").mkdir()
        self.state.write_text(json.dumps({"attached": {}}))
        modules = root / "site"
        (modules / "google" / "colab").mkdir(parents=True)  # Kaggle's image carries google.colab too
        (modules / "google" / "__init__.py").write_text("")
        (modules / "google" / "colab" / "__init__.py").write_text("")
        (modules / "kaggle_secrets.py").write_text(textwrap.dedent(FAKE_KAGGLE_SECRETS))
        monkeypatch.syspath_prepend(str(modules))
        for name in ("kaggle_secrets", "google", "google.colab"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        env = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_URL_BASE": "https://www.kaggle.com",
               "KAGGLE_DATA_PROXY_URL": "https://dp.kaggle.net", "KAGGLE_USER_SECRETS_TOKEN": "jwt-for-tests",
               "COLAB_RELEASE_TAG": "release-colab_20260514-060000_RC00",  # inherited from Colab's base image
               "COLAB_SD_KAGGLE_ROOT": str(self.root), "FAKE_KAGGLE_STATE": str(self.state)}
        self.env = env
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("COLAB_SD_HOME", raising=False)
        monkeypatch.delenv("COLAB_SD_OUTPUTS", raising=False)

    def update(self, **changes) -> dict:
        state = json.loads(self.state.read_text())
        state.update(changes)
        self.state.write_text(json.dumps(state))
        return state

    def calls(self) -> int:
        return json.loads(self.state.read_text()).get("calls", 0)


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    return Kaggle(tmp_path, monkeypatch)


def test_kaggle_is_found_before_colab_and_picks_its_folders(kaggle):
    assert hosts.host_name() == "kaggle" and not tokens.in_colab()
    import google.colab  # noqa: F401  the Colab package imports fine here, and still this is not Colab

    host = hosts.detect()
    assert host.label == "Kaggle"
    assert library.models_root() == kaggle.root / "temp" / "models"  # not saved, the session's big disk
    assert metadata.outputs_root() == kaggle.root / "working" / "outputs"  # saved with the notebook
    assert hosts.offline_hint().startswith("on Kaggle, turn on Settings → Internet")


def test_kaggle_secret_is_found_and_named_as_kaggle_says_it(kaggle, monkeypatch):
    kaggle.update(attached={"CIVITAI_TOKEN": "kaggle-civitai-secret-123456"})
    token = tokens.lookup("civitai")
    assert token.origin == "Kaggle secret CIVITAI_TOKEN"
    assert token.secret.reveal() == "kaggle-civitai-secret-123456"
    assert "kaggle-civitai-secret" not in repr(token)
    monkeypatch.setenv("CIVITAI_TOKEN", "env-token-123456")  # the environment still comes first
    assert tokens.lookup("civitai").origin == "environment CIVITAI_TOKEN"


def test_unattached_kaggle_secret_says_where_to_attach_it(kaggle):
    assert tokens.lookup("huggingface") is None
    problem = hosts.secret_problem("HF_TOKEN")
    assert problem == ("no Kaggle secret HF_TOKEN is attached to this notebook: add it under Add-ons → Secrets "
                       "and tick it for this notebook")
    assert "\n" not in problem


def test_kaggle_offline_is_one_line_naming_the_internet_setting_and_not_asked_again(kaggle):
    kaggle.update(offline=True)
    assert tokens.lookup("civitai") is None
    assert kaggle.calls() == 1  # three CivitAI names, but a store that timed out is not asked again
    problem = hosts.secret_problem("CIVITAI_API_KEY")
    assert problem.startswith("Kaggle secrets need the internet: turn on Settings → Internet")
    kaggle.update(offline=False, attached={"HF_TOKEN": "hf-kaggle-secret-123456"})
    hosts.forget_problems()  # the user switched the internet on
    assert tokens.lookup("huggingface").origin == "Kaggle secret HF_TOKEN"


def test_secrets_client_outside_a_kaggle_session(kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USER_SECRETS_TOKEN")  # the constructor raises CredentialError
    assert hosts.secret("CIVITAI_TOKEN") is None
    assert "Add-ons → Secrets" in hosts.secret_problem("CIVITAI_TOKEN")
    assert hosts.secret("") is None
    assert hosts.secret_problem("") is not None


def test_tokens_panel_and_app_on_kaggle(kaggle):
    pytest.importorskip("ipywidgets")
    from colab_sd.ui.app import App

    kaggle.update(attached={"CIVITAI_TOKEN": "kaggle-civitai-secret-123456"})
    app = App()
    assert app.models_dir == kaggle.root / "temp" / "models"
    assert (app.models_dir / "lora").is_dir()
    assert "from Kaggle secret CIVITAI_TOKEN" in app.tokens_panel.civitai.origin.value
    hf = app.tokens_panel.huggingface
    assert "no Kaggle secret HF_TOKEN is attached to this notebook" in hf.origin.value
    assert "add the Kaggle secret HF_TOKEN (Add-ons → Secrets)" in hf.help.value
    text = json.dumps([w.value for w in _html_widgets(app.widget)], ensure_ascii=False)
    assert str(app.models_dir) in text and "kaggle-civitai-secret" not in text


def _html_widgets(widget):
    import ipywidgets as widgets

    if isinstance(widget, widgets.HTML):
        yield widget
    for child in getattr(widget, "children", ()):
        yield from _html_widgets(child)


# ---------------------------------------------------------------------------------------------- Colab


def _fake_shell(monkeypatch, module: str, name: str = "Shell", user_ns=None):
    import IPython

    shell_class = type(name, (), {"__module__": module, "user_ns": user_ns or {}})
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell_class())


def test_colab_is_its_shell_class(monkeypatch, tmp_path):
    monkeypatch.setenv("COLAB_SD_COLAB_ROOT", str(tmp_path / "content"))
    monkeypatch.delenv("COLAB_SD_HOME", raising=False)
    monkeypatch.delenv("COLAB_SD_OUTPUTS", raising=False)
    _fake_shell(monkeypatch, "google.colab._shell")
    assert hosts.host_name() == "colab" and tokens.in_colab()
    assert library.models_root() == tmp_path / "content" / "models"
    assert metadata.outputs_root() == tmp_path / "content" / "outputs"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")  # "Save & Run All" on Kaggle: still Kaggle
    assert hosts.host_name() == "kaggle"


def test_colab_release_tag_counts_only_without_a_shell_and_off_kaggle(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260825")
    assert hosts.host_name() == "colab"  # `!colab-sd …` run from a Colab cell
    monkeypatch.setenv("KAGGLE_URL_BASE", "https://www.kaggle.com")
    assert hosts.host_name() == "kaggle"


def test_jupyter_and_vscode_kernels(monkeypatch):
    _fake_shell(monkeypatch, "ipykernel.zmqshell", "ZMQInteractiveShell")
    assert hosts.host_name() == "jupyter"
    assert hosts.detect().models_dir == Path("models").resolve()
    _fake_shell(monkeypatch, "ipykernel.zmqshell", "ZMQInteractiveShell", {"__vsc_ipynb_file__": "/x/a.ipynb"})
    assert hosts.host_name() == "vscode"
    assert hosts.detect().secret_hint("HF_TOKEN") == "set the environment variable HF_TOKEN before starting Python"


@pytest.mark.parametrize("error,expected", [
    ("SecretNotFoundError", "no Colab secret HF_TOKEN: add it in the secrets panel (key icon in the left bar)"),
    ("NotebookAccessError", "this notebook may not read the Colab secret HF_TOKEN: switch on its notebook access"),
    ("TimeoutException", "the Colab secret HF_TOKEN cannot be read without Colab's web page"),
])
def test_colab_secret_errors_are_one_line_each(monkeypatch, error, expected):
    import types

    _fake_shell(monkeypatch, "google.colab._shell")
    google, colab, userdata = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.userdata"))
    google.__path__, colab.__path__ = [], []
    errors = {name: type(name, (Exception,), {}) for name in
              ("SecretNotFoundError", "NotebookAccessError", "TimeoutException")}

    def get(name):
        raise errors[error](name)

    userdata.get, colab.userdata = get, userdata
    for name, module in (("google", google), ("google.colab", colab), ("google.colab.userdata", userdata)):
        monkeypatch.setitem(sys.modules, name, module)
    assert tokens.lookup("huggingface") is None
    problem = hosts.secret_problem("HF_TOKEN")
    assert problem.startswith(expected) and "\n" not in problem
