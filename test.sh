#!/usr/bin/env bash
# Set up (a virtual environment in $VENV, default .venv) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .  # the package, editable: python -m submission... works from any folder
"$VENV/bin/python" -m pytest -n 2 --dist worksteal "$@"
