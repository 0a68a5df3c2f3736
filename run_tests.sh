#!/usr/bin/env bash
# Installs everything the test suite needs into .venv and runs it: ./run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh -r requirements-test.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-test-nodeps.txt \
  2> >(grep -v "^WARNING: Location" >&2)
# The optional Apache Beam extra (batch_detect.py), without its protobuf pin: see the file.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-beam.txt \
  2> >(grep -v "^WARNING: Location" >&2)
# The web-page test drives a real headless browser; install Debian's Chromium when we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[tests] installing chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[tests] could not install chromium: the browser test will be skipped"
fi
exec .venv/bin/python -m pytest "$@"
