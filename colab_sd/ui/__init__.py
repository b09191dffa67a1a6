"""The notebook app: ipywidgets panels over the same core as the CLI. Nothing in the core imports this."""
from __future__ import annotations

__all__ = ["launch", "App"]


def launch(models_dir=None, outputs_dir=None, *, display: bool = True):
    """Build the app (tokens, download, library, generate), display it, and return it."""
    from .app import App
    from .compat import enable_colab_widgets

    enable_colab_widgets()
    app = App(models_dir=models_dir, outputs_dir=outputs_dir)
    if display:
        from IPython.display import display as show

        show(app.widget)
    return app


def __getattr__(name):
    if name == "App":
        from .app import App

        return App
    raise AttributeError(name)
