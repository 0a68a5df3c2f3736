#!/usr/bin/env bash
# The main job on a fresh machine: install into .venv, then convert → train → evaluate → detect →
# export → serve → query on generated sample data. Rerunning reuses what already exists.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
exec .venv/bin/python scripts/demo.py "$@"
