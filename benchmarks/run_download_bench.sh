#!/usr/bin/env bash
# One command on a fresh machine: set up colab-sd (no torch), then run the download benchmark.
#   bash benchmarks/run_download_bench.sh            # 256 MiB and 1 GiB, 3 repeats (under 10 minutes)
#   bash benchmarks/run_download_bench.sh --quick    # small files, 1 repeat (about a minute)
# The benchmark installs nginx, aria2, curl, wget (apt-get) and parfive/pypdl (pinned, outside the venv) itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/colab-sd" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -e .
fi
exec "$VENV/bin/python" benchmarks/bench_download.py "$@"
