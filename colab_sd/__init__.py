"""colab_sd: verified Stable Diffusion model downloads and inline generation for Colab.

The public API lives here. Nothing heavy is imported at module level: `import colab_sd` and
`colab-sd download` must start fast and never pull in torch, diffusers or ipywidgets.
"""
from ._version import __version__

__all__ = ["download", "generate", "generate_batch", "upscale", "launch", "read_parameters", "recreate",
           "__version__"]


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


def generate_batch(requests=None, **options):
    """Many requests over every GPU (worker processes) or a Ray cluster; see `colab_sd.generation.batch`.

    `generate_batch("jobs.jsonl", workers="all")`, `generate_batch(request, prompts=[...], seeds=4, workers=2)`.
    Returns a BatchResult; each image is the one a lone `generate` with the same request and seed makes.
    """
    from .generation.batch import generate_batch as _generate_batch

    return _generate_batch(requests, **options)


def upscale(images, upscaler="Lanczos", scale=2.0, **options):
    """Upscale image files or PIL images with a model from `upscaler/` (spandrel) or Lanczos; returns an
    UpscaleResult (images, saved paths). See `colab_sd.generation.upscale_files.upscale`."""
    from .generation.upscale_files import upscale as _upscale

    return _upscale(images, upscaler, scale=scale, **options)


def read_parameters(path_or_image):
    """The generation settings stored in an image (A1111 / Forge / CivitAI / colab_sd infotext, EXIF UserComment,
    ComfyUI graphs) as a dict with the request's field names; see `colab_sd.infotext`. No torch; raises InputError."""
    from .infotext import read_parameters as _read_parameters

    return _read_parameters(path_or_image)


def recreate(source, models_dir=None, **options):
    """An image's CivitAI page (civitai.com/images/ID, civitai.red/…), URL or file in: every resource it used found
    or downloaded, and the request to make it again; see `colab_sd.recreation.recreate`. `generate=True` renders it."""
    from .recreation import recreate as _recreate

    return _recreate(source, models_dir, **options)


def launch(models_dir=None, outputs_dir=None):
    """Display the notebook app (tokens, download, library, generate) and return it."""
    from .ui import launch as _launch

    return _launch(models_dir=models_dir, outputs_dir=outputs_dir)
