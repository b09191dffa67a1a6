#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them all.
#   bash scripts/test.sh            # full suite
#   bash scripts/test.sh -k civitai # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch and its matching torchvision are pinned for the tests only; the package itself never pins them.
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install -q -e ".[test]"

# The browser test drives Debian's Chromium (Playwright cannot download its own browsers here).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will report it" >&2
  fi
fi

exec "$VENV/bin/python" -m pytest "$@"
