#!/usr/bin/env bash
# Creates .venv in the repository (if missing) and installs the pinned requirements into it.
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[install] creating virtual environment .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "[install] installing requirements into .venv (first time: a few minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt "$@" 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt 2> >(grep -v "^WARNING: Location" >&2)
echo "[install] done: $(.venv/bin/python -c 'import tensorflow as tf; print("TensorFlow", tf.__version__)' 2>/dev/null)"
