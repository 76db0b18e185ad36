#!/usr/bin/env bash
# The main job: compares the margin heads on the embedded synthetic identity dataset.
. "$(dirname "$0")/env.sh"
exec marginface demo "$@"
