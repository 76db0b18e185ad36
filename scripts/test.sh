#!/usr/bin/env bash
# Runs the test suite (the fast default set; pass -m slow for the slow tests) in .venv.
. "$(dirname "$0")/env.sh"
exec python -m pytest -q "$@"
