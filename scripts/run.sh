#!/usr/bin/env bash
# Set up colab_sd on a fresh machine and download the model URL(s) given as arguments into ./models.
#   bash scripts/run.sh URL [URL ...] [colab-sd download options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ $# -eq 0 ]; then
  echo "usage: bash scripts/run.sh URL [URL ...]   (a CivitAI, Hugging Face, Google Drive or direct model link)" >&2
  exit 2
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e .
exec "$VENV/bin/colab-sd" download "$@"
