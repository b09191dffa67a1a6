"""Which notebook host this is (Colab, Kaggle, Jupyter, VS Code, a plain shell), its folders and its secrets.

Light: no torch, no IPython import (an IPython already loaded is asked, nothing more).

Detection order (facts from `shared/reference/platforms.md`):

1. **Kaggle** first: any environment variable starting with ``KAGGLE_`` (``KAGGLE_KERNEL_RUN_TYPE``,
   ``KAGGLE_URL_BASE``, ``KAGGLE_DATA_PROXY_URL``; accelerate's notebook_launcher tests the same prefix).
   Kaggle's image is built from Colab's, so ``COLAB_RELEASE_TAG`` and an importable ``google.colab`` are there too.
2. **Colab**: the kernel's shell class lives in ``google.colab`` (what huggingface_hub and kagglehub test); in a
   process without an IPython shell (``!colab-sd …`` from a cell) ``COLAB_RELEASE_TAG`` decides, which is safe only
   because Kaggle was ruled out first. ``VERTEX_PRODUCT=COLAB_ENTERPRISE`` is Colab Enterprise.
3. **VS Code** (a kernel started by VS Code: ``VSCODE_PID`` / ``__vsc_ipynb_file__``), **Jupyter** (any other
   IPython kernel), else **local** (a shell or script).

Folders per host (``$COLAB_SD_HOME`` / ``$COLAB_SD_OUTPUTS`` still win; see `library.models_root`):

- Colab: ``/content/models``, ``/content/outputs`` (wiped with the runtime; the notebook offers Google Drive).
- Kaggle: models in ``/kaggle/temp/models``, images in ``/kaggle/working/outputs``. ``/kaggle/working`` is saved
  as the notebook's output and capped at 20 GB: two SDXL checkpoints (6.5 GB each) and a few LoRAs would fill it,
  and a version save would upload them again each time. ``/kaggle/temp`` is on the ~73 GB session disk and is not
  saved, which suits re-downloadable models; images are small and are what a user wants to keep.
- elsewhere: ``./models`` and ``./outputs`` in the working directory.

``COLAB_SD_COLAB_ROOT`` (default ``/content``) and ``COLAB_SD_KAGGLE_ROOT`` (default ``/kaggle``) move those roots,
which is how the tests simulate a host under a temporary folder.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger("colab_sd.hosts")

# Where each host's secrets are kept, in the host's own words (used in every hint and message).
_SECRET_PLACES = {
    "colab": "the Colab secrets panel (key icon in the left bar), with notebook access switched on",
    "kaggle": "Add-ons → Secrets in the Kaggle editor, attached to this notebook",
}


@dataclass(frozen=True)
class Host:
    """A notebook host: `name` is "colab", "kaggle", "vscode", "jupyter" or "local"; `label` is for people."""

    name: str
    label: str
    models_dir: Path
    outputs_dir: Path

    @property
    def has_secrets(self) -> bool:
        """True where the host has a secrets store of its own (Colab, Kaggle)."""
        return self.name in _SECRET_PLACES

    def secret_origin(self, name: str) -> str:
        """How a token found in this host's store is described: "Kaggle secret CIVITAI_TOKEN"."""
        return f"{self.label} secret {name}"

    def secret_hint(self, name: str) -> str:
        """Where a user puts a token named `name` on this host (one sentence, no value)."""
        if self.name == "colab":
            return f"store it as the Colab secret {name} (key icon in the left bar) and allow this notebook access"
        if self.name == "kaggle":
            return f"add the Kaggle secret {name} (Add-ons → Secrets) and tick it for this notebook"
        return f"set the environment variable {name} before starting Python"


# ---------------------------------------------------------------------------------------------- detection


def _shell():
    """The running IPython shell, or None; IPython is only asked when something already imported it."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except Exception:  # a half-initialised IPython: not a kernel we can use
        return None


def _is_kaggle() -> bool:
    return any(key.startswith("KAGGLE_") for key in os.environ)


def _is_colab(shell) -> bool:
    if os.environ.get("VERTEX_PRODUCT") == "COLAB_ENTERPRISE":
        return True
    if shell is not None:
        return type(shell).__module__.startswith("google.colab")
    # No kernel here (a `!colab-sd` subprocess): the release tag, now that Kaggle is ruled out.
    return bool(os.environ.get("COLAB_RELEASE_TAG"))


def _is_vscode(shell) -> bool:
    if os.environ.get("VSCODE_PID") or os.environ.get("VSCODE_CWD"):
        return True
    namespace = getattr(shell, "user_ns", None) or {}
    return "__vsc_ipynb_file__" in namespace


def host_name() -> str:
    """"kaggle", "colab", "vscode", "jupyter" or "local" (see the module docstring for the order)."""
    if _is_kaggle():
        return "kaggle"
    shell = _shell()
    if _is_colab(shell):
        return "colab"
    if shell is not None and _is_vscode(shell):
        return "vscode"
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        return "jupyter"
    return "local"


def _root(env: str, default: str) -> Path:
    return Path(os.environ.get(env, "").strip() or default)


def colab_root() -> Path:
    """Colab's working folder, /content (``COLAB_SD_COLAB_ROOT`` moves it for tests)."""
    return _root("COLAB_SD_COLAB_ROOT", "/content")


def detect() -> Host:
    """The current host with its default folders (cheap: environment and the loaded shell only)."""
    name = host_name()
    if name == "kaggle":
        root = _root("COLAB_SD_KAGGLE_ROOT", "/kaggle")
        return Host("kaggle", "Kaggle", root / "temp" / "models", root / "working" / "outputs")
    if name == "colab":
        return Host("colab", "Colab", colab_root() / "models", colab_root() / "outputs")
    label = {"vscode": "VS Code", "jupyter": "Jupyter"}.get(name, "this machine")
    return Host(name, label, Path("models").resolve(), Path("outputs").resolve())


def in_colab() -> bool:
    return host_name() == "colab"


def in_kaggle() -> bool:
    return host_name() == "kaggle"


def default_models_dir() -> Path:
    return detect().models_dir


def default_outputs_dir() -> Path:
    return detect().outputs_dir


# ---------------------------------------------------------------------------------------------- secrets

_problems: dict[str, str] = {}
_problems_lock = threading.Lock()
# A store that timed out (Kaggle offline: 40 s; Colab without its web page: 10 s) is not asked again for a while:
# a token lookup tries up to three names per service and must not stall for minutes.
_UNREACHABLE_FOR = 300.0
_unreachable: dict[str, tuple[float, str]] = {}


def secret(name: str, host: Optional[str] = None) -> Optional[str]:
    """The value of the host's secret `name`, or None (absent, not shared with the notebook, offline, no store).

    `host` defaults to the detected one. Why a lookup failed is kept as one line for `secret_problem(name)`;
    the value itself is never logged or kept here.
    """
    host = host or host_name()
    with _problems_lock:
        until, why = _unreachable.get(host, (0.0, ""))
    if time.monotonic() < until:
        _note(name, why)
        return None
    try:
        if host == "kaggle":
            value = _kaggle_secret(name)
        elif host == "colab":
            value = _colab_secret(name)
        else:
            return None
    except Exception as err:  # every store has its own error classes with no common base: sort them by name
        why = explain_secret_error(host, name, err)
        _note(name, why)
        if isinstance(err, ConnectionError) or type(err).__name__ in ("ConnectionError", "TimeoutException"):
            with _problems_lock:
                _unreachable[host] = (time.monotonic() + _UNREACHABLE_FOR, why)
        return None
    _note(name, None if value else f"the {_label(host)} secret {name} is empty")
    return value or None


def forget_problems() -> None:
    """Ask every store again on the next lookup (after the user switched the internet on, attached a secret…)."""
    with _problems_lock:
        _problems.clear()
        _unreachable.clear()


def secret_problem(name: str) -> Optional[str]:
    """Why the last `secret(name)` found nothing, as one line naming the host's own setting; None if it worked."""
    with _problems_lock:
        return _problems.get(name)


def _note(name: str, problem: Optional[str]) -> None:
    with _problems_lock:
        if problem is None:
            _problems.pop(name, None)
        else:
            _problems[name] = problem


def _label(host: str) -> str:
    return {"kaggle": "Kaggle", "colab": "Colab"}.get(host, host)


def _kaggle_secret(name: str) -> Optional[str]:
    from kaggle_secrets import UserSecretsClient  # type: ignore  # Kaggle's image ships it

    return UserSecretsClient().get_secret(name)


def _colab_secret(name: str) -> Optional[str]:
    from google.colab import userdata  # type: ignore

    return userdata.get(name)


def explain_secret_error(host: str, name: str, err: BaseException) -> str:
    """One line for a failed secret lookup, naming the host's setting to change (never the value).

    Kaggle (docker-python kaggle_secrets / kaggle_web_client): `BackendError` for an unknown or unattached label,
    `CredentialError` outside a Kaggle session or on HTTP 401/403, the builtin `ConnectionError` when the notebook's
    internet is off, `ValidationError` for an empty label. Colab (colabtools userdata): `SecretNotFoundError`,
    `NotebookAccessError` (access not granted), `TimeoutException` (no Colab UI, e.g. the VS Code extension).
    """
    kind = type(err).__name__
    if host == "kaggle":
        if isinstance(err, ConnectionError) or kind == "ConnectionError":
            return ("Kaggle secrets need the internet: turn on Settings → Internet in the notebook editor "
                    "(it is also needed for pip, Hugging Face and CivitAI)")
        if kind == "BackendError":
            return (f"no Kaggle secret {name} is attached to this notebook: add it under Add-ons → Secrets and tick "
                    f"it for this notebook")
        if kind == "CredentialError":
            return (f"Kaggle refused access to the secret {name}: run the notebook in the Kaggle editor with the "
                    f"secret attached (Add-ons → Secrets)")
        if kind == "ValidationError":
            return f"{name!r} is not a valid Kaggle secret label"
    if host == "colab":
        if kind == "SecretNotFoundError":
            return f"no Colab secret {name}: add it in the secrets panel (key icon in the left bar)"
        if kind == "NotebookAccessError":
            return (f"this notebook may not read the Colab secret {name}: switch on its notebook access in the "
                    f"secrets panel (key icon in the left bar)")
        if kind == "TimeoutException":
            return (f"the Colab secret {name} cannot be read without Colab's web page (e.g. from VS Code): set the "
                    f"environment variable {name} or paste the token instead")
    if isinstance(err, ImportError):
        return f"{_label(host)} secrets are not available in this Python"
    log.debug("secret lookup on %s failed with %s", host, kind)
    return f"the {_label(host)} secret {name} could not be read ({kind})"


# ---------------------------------------------------------------------------------------------- internet


def offline_hint() -> str:
    """What to switch on when the network is unreachable, in this host's words (appended to network errors)."""
    name = host_name()
    if name == "kaggle":
        return "on Kaggle, turn on Settings → Internet in the notebook editor"
    if name == "colab":
        return "check that the Colab runtime is connected"
    return "check this machine's internet connection or proxy"
