#!/usr/bin/env bash
# Runs the test suite (the fast default set; pass -m slow for the slow tests) in the development
# environment, .venv-dev (scripts/env.sh).
export MARGINFACE_ENV=dev
. "$(dirname "$0")/env.sh"
exec python -m pytest -q "$@"
