"""Tokens: a masked field per service, where the token in use came from, and a check against the service.

The value typed in a field is moved into the shared TokenStore and the field is cleared at once,
so the token is never saved in the notebook's widget state. The value itself is never displayed.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import ipywidgets as widgets

from .. import accounts, hosts
from ..errors import ColabSDError
from ..tokens import ENV_NAMES, Token, TokenStore, redact
from .html import message

log = logging.getLogger("colab_sd.ui")

SERVICES = {
    "civitai": ("CivitAI", "civitai.com → Account settings → API keys"),
    "huggingface": ("Hugging Face", "huggingface.co/settings/tokens (a read token is enough)"),
}


def describe_origin(token: Optional[Token]) -> str:
    """Where the token in use came from, in the panel's words; never the value."""
    if token is None:
        return "not set"
    if token.origin == "argument":
        return "entered in this panel"
    return f"from {token.origin}"


class TokenRow:
    """One service: password field, Use and Check buttons, the token's origin and the check's result."""

    def __init__(self, service: str, tokens: TokenStore, check: Callable[[str, Token], accounts.Account]):
        self.service = service
        self.tokens = tokens
        self._check = check
        title, where = SERVICES[service]
        self.title = title
        self.field = widgets.Password(placeholder=f"paste your {title} token", description=title,
                                      style={"description_width": "110px"}, layout=widgets.Layout(width="420px"))
        self.use_button = widgets.Button(description="Use", tooltip="use this token for downloads", icon="key",
                                         layout=widgets.Layout(width="80px"))
        self.check_button = widgets.Button(description="Check", tooltip=f"ask {title} who this token belongs to",
                                           icon="user", layout=widgets.Layout(width="90px"))
        self.origin = widgets.HTML()
        self.result = widgets.HTML()
        secret_name = ENV_NAMES[service][0]
        self.help = widgets.HTML(message(f"Get one at {where}. Or {hosts.detect().secret_hint(secret_name)} "
                                         f"and it is picked up here automatically."))
        self.use_button.on_click(self.use)
        self.check_button.on_click(self.check)
        self.widget = widgets.VBox([widgets.HBox([self.field, self.use_button, self.check_button]),
                                    widgets.HBox([self.origin, self.result]), self.help])
        self.show_origin()

    def show_origin(self) -> None:
        token = self.tokens.get(self.service)
        tone = "ok" if token else "muted"
        text = f"{self.title} token: {describe_origin(token)}"
        problem = None if token else next(filter(None, map(hosts.secret_problem, ENV_NAMES[self.service])), None)
        if problem:  # the host's store was asked and said why not (not attached, internet off…)
            text += f" ({problem})"
        self.origin.value = message(text, tone) + "&nbsp;&nbsp;"

    def take_field(self) -> bool:
        """Move the typed value into the store and clear the field; False when the field was empty."""
        value = (self.field.value or "").strip()
        self.field.value = ""
        if not value:
            return False
        self.tokens.set(self.service, value)
        self.show_origin()
        return True

    def use(self, _=None) -> None:
        if self.take_field():
            self.result.value = message("saved for this session (not written anywhere)", "ok")
        else:
            self.result.value = message("paste a token in the field first", "warn")

    def check(self, _=None) -> None:
        self.take_field()
        token = self.tokens.get(self.service)
        if token is None:
            self.result.value = message(f"no {self.title} token to check: paste one above or "
                                        f"{hosts.detect().secret_hint(ENV_NAMES[self.service][0])}", "warn")
            return
        self.result.value = message(f"checking with {self.title}…", "info")
        try:
            account = self._check(self.service, token)
        except ColabSDError as err:
            self.result.value = message(f"✗ {redact(err)}", "error")
            return
        except Exception as err:  # an unexpected failure still gets one readable line
            log.debug("token check failed", exc_info=True)
            self.result.value = message(f"✗ the check failed: {redact(f'{type(err).__name__}: {err}')}", "error")
            return
        self.result.value = message(f"✓ valid: belongs to {account.username}", "ok")


class TokensPanel:
    """Both services' rows."""

    def __init__(self, tokens: TokenStore, check: Callable[[str, Token], accounts.Account] = accounts.check):
        self.tokens = tokens
        self.rows = {service: TokenRow(service, tokens, check) for service in SERVICES}
        intro = widgets.HTML(message("Tokens are needed for some CivitAI models and for gated or private Hugging Face "
                                     "repositories. They stay in memory; fields are cleared after reading."))
        self.widget = widgets.VBox([intro] + [row.widget for row in self.rows.values()])

    @property
    def civitai(self) -> TokenRow:
        return self.rows["civitai"]

    @property
    def huggingface(self) -> TokenRow:
        return self.rows["huggingface"]
