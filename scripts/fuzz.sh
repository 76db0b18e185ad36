#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with atheris: the .rec/.idx reader, the .bin reader, the
# pairs.txt parser, the landmarks parser and image decoding (tests/_support/fuzz_targets.py),
# RUNS inputs per target (default 100000); and the .bin reader with the structured fuzzer
# (target "structured": pickles built from the allowed opcodes and globals, in child processes
# that catch crashes, hangs and allocations above 10x an input's size; tests/fuzz/structured.py).
# Not part of the test suite (a slice of the structured one is). A crashing input is saved under
# tests/fuzz/crashers/TARGET/ (bin/ for structured; the suite replays every file there) and the
# script fails.
#   scripts/fuzz.sh [RUNS] [TARGET ...]
export MARGINFACE_ENV=dev  # atheris is a development tool (.venv-dev)
. "$(dirname "$0")/env.sh"
RUNS="${1:-100000}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(recordio bin pairs landmarks image structured)
CORPUS="${MARGINFACE_FUZZ_CORPUS:-$(mktemp -d)}"
status=0
for target in "${TARGETS[@]}"; do
    if [ "$target" = structured ]; then
        log="$CORPUS/structured.log"
        if python tests/fuzz/structured.py --runs "$RUNS" >"$log" 2>&1; then
            echo "structured: $(tail -n 1 "$log")"
        else
            echo "structured: FAILED (see $log; the inputs are in tests/fuzz/crashers/bin/)"
            tail -n 30 "$log"
            status=1
        fi
        continue
    fi
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
