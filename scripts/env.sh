# Sourced by the other scripts: creates (once) and activates the project's virtual environment
# in .venv, and reinstalls when pyproject.toml changes. CPU-only machines get the CPU build of
# torch (torch==2.13.0 from local disk), never a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MARGINFACE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[marginface] creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
STAMP="$VENV/.marginface-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[marginface] installing dependencies into $VENV" >&2
    if ! python -c "import torch" 2>/dev/null; then
        python -m pip install --quiet "torch==${MARGINFACE_TORCH_VERSION:-2.13.0}"
    fi
    python -m pip install --quiet -e "$ROOT[dev]"
    # the MTCNN detector's weights (facenet-pytorch's wheel ships them); its pins conflict with
    # ours and marginface never imports it, so it goes in without its dependencies
    python -m pip install --quiet --no-deps "facenet-pytorch==2.6.0"
    echo "$WANT" > "$STAMP"
fi
cd "$ROOT"
