# Sourced by the other scripts: creates (once) and activates one of the project's two virtual
# environments, and reinstalls it when pyproject.toml changes. CPU-only machines get the CPU
# build of torch (torch==2.13.0 from local disk), never a multi-GB CUDA build.
#
#   MARGINFACE_ENV=runtime (the default; scripts/demo.sh): .venv, what the commands need:
#       torch, the runtime dependencies, the MTCNN weights (marginface[export] adds ONNX)
#   MARGINFACE_ENV=dev (scripts/test.sh, .ci/run): .venv-dev, the same plus [dev]: pytest,
#       ruff, onnx/onnxruntime, scikit-image, hypothesis, atheris, triton
#
# MARGINFACE_VENV overrides the folder; PYTHON the interpreter that creates it (python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND="${MARGINFACE_ENV:-runtime}"
case "$KIND" in
    runtime) EXTRAS="" ; DEFAULT_VENV="$ROOT/.venv" ;;
    dev) EXTRAS="[dev]" ; DEFAULT_VENV="$ROOT/.venv-dev" ;;
    *) echo "[marginface] MARGINFACE_ENV must be runtime or dev, got '$KIND'" >&2; exit 2 ;;
esac
VENV="${MARGINFACE_VENV:-$DEFAULT_VENV}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[marginface] creating the $KIND virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.marginface-installed"
WANT="$KIND $(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[marginface] installing the $KIND dependencies into $VENV" >&2
    if ! python -c "import torch" 2>/dev/null; then
        python -m pip install --quiet "torch==${MARGINFACE_TORCH_VERSION:-2.13.0}"
    fi
    python -m pip install --quiet -e "$ROOT$EXTRAS"
    # the MTCNN detector's weights (facenet-pytorch's wheel ships them); its pins conflict with
    # ours and marginface never imports it, so it goes in without its dependencies
    python -m pip install --quiet --no-deps "facenet-pytorch==2.6.0"
    echo "$WANT" > "$STAMP"
fi
cd "$ROOT"
