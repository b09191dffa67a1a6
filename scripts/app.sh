#!/usr/bin/env bash
# Set up colab_sd on a fresh machine and open the notebook app locally (JupyterLab on 127.0.0.1).
#   bash scripts/app.sh                 # notebook + models in ./studio, browser opens
#   bash scripts/app.sh DIR --no-browser --port 8899
# Run the notebook's cell, then use the Download / Library / Generate / Tokens tabs as in Colab.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The generation stack (torch, diffusers) and JupyterLab; set TORCH_SPEC to pick a torch build, e.g.
# TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu" for a machine without a GPU.
if [ -n "${TORCH_SPEC:-}" ]; then
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $TORCH_SPEC
fi
"$VENV/bin/python" -m pip install -q -e ".[generation,app]"
if [ $# -eq 0 ]; then
  set -- studio
fi
exec "$VENV/bin/colab-sd" app "$@"
