#!/usr/bin/env bash
# The main job: compares the margin heads on the embedded synthetic identity dataset, in the
# runtime environment, .venv (scripts/env.sh).
export MARGINFACE_ENV=runtime
. "$(dirname "$0")/env.sh"
exec marginface demo "$@"
