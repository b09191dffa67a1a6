"""colab_sd: verified Stable Diffusion model downloads and inline generation for Colab.

The public API lives here. Nothing heavy is imported at module level: `import colab_sd` and
`colab-sd download` must start fast and never pull in torch, diffusers or ipywidgets.
"""
from ._version import __version__

__all__ = ["download", "generate", "launch", "__version__"]


def download(url, kind=None, models_dir=None, name=None, sha256=None, on_event=None, **options):
    """Download one model URL into the models library and return the final path.

    See `colab_sd.api.download` for the parameters.
    """
    from .api import download as _download

    return _download(url, kind=kind, models_dir=models_dir, name=name, sha256=sha256, on_event=on_event, **options)


def generate(request=None, **fields):
    """Generate images with diffusers; see `colab_sd.generation.generate`."""
    from .generation import generate as _generate

    return _generate(request, **fields)


def launch(models_dir=None, outputs_dir=None):
    """Display the notebook app (tokens, download, library, generate) and return it."""
    from .ui import launch as _launch

    return _launch(models_dir=models_dir, outputs_dir=outputs_dir)
