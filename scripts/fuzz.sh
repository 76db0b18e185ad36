#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with atheris: the .rec/.idx reader, the .bin reader, the
# pairs.txt parser, the landmarks parser and image decoding (tests/fuzz/targets.py), RUNS inputs
# per target (default 100000). Not part of the test suite. A crashing input is saved under
# tests/fuzz/crashers/TARGET/ (the suite replays every file there) and the script fails.
#   scripts/fuzz.sh [RUNS] [TARGET ...]
export MARGINFACE_ENV=dev  # atheris is a development tool (.venv-dev)
. "$(dirname "$0")/env.sh"
RUNS="${1:-100000}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(recordio bin pairs landmarks image)
CORPUS="${MARGINFACE_FUZZ_CORPUS:-$(mktemp -d)}"
status=0
for target in "${TARGETS[@]}"; do
    mkdir -p "$CORPUS/$target" "tests/fuzz/crashers/$target"
    log="$CORPUS/$target.log"
    if python tests/fuzz/run.py "$target" -runs="$RUNS" -max_len=8192 -timeout=20 \
        -artifact_prefix="tests/fuzz/crashers/$target/" \
        "$CORPUS/$target" "tests/fuzz/seeds/$target" >"$log" 2>&1; then
        echo "$target: $(grep -E '^Done [0-9]+ runs' "$log")"
    else
        echo "$target: FAILED (see $log; the input is in tests/fuzz/crashers/$target/)"
        tail -n 30 "$log"
        status=1
    fi
done
exit $status
