"""The package version, alone in its module so that low modules (http's User-Agent, the infotext writer, the CLI)
can read it without importing the package face `colab_sd/__init__.py`."""
__version__ = "0.1.0"
