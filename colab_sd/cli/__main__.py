"""`python -m colab_sd.cli ...` runs the `colab-sd` command."""
import sys

from .main import main

sys.exit(main())
