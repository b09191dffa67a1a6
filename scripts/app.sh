#!/usr/bin/env bash
# Set up colab_sd on a fresh machine and open the notebook app locally (JupyterLab on 127.0.0.1).
#   bash scripts/app.sh                            # notebook + models in ./studio, browser opens
#   bash scripts/app.sh --no-browser --port 8899   # the same folder, options passed on
#   bash scripts/app.sh DIR --no-browser           # another folder (relative to the repository)
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
# The notebook folder is the one argument that is not an option (nor an option's value); without one it is
# ./studio (git-ignored), never the repository root.
folder=""
takes_value=0
for arg in "$@"; do
  if [ "$takes_value" = 1 ]; then takes_value=0; continue; fi
  case "$arg" in
    --port|--dir) takes_value=1 ;;
    -*) ;;
    *) folder="$arg" ;;
  esac
done
if [ -z "$folder" ]; then
  set -- studio "$@"
fi
exec "$VENV/bin/colab-sd" app "$@"
