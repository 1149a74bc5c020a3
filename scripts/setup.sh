#!/usr/bin/env bash
# Set up (or refresh) the studio's virtual environment in .venv. Safe to run again: it does nothing when
# pyproject.toml has not changed since the last run.
#
# PyTorch: if .venv already has torch (say, the CUDA build a DGX-Spark needs, installed by hand from PyTorch's
# own wheel index), it is kept as it is. Only where no torch is present is the CPU build pinned (torch==2.13.0),
# so a plain machine installs fast instead of pulling several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}   # "test" adds pytest, gradio_client, playwright, ruff

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

stamp=".venv/.dgxp-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)${EXTRAS:+-$EXTRAS}"
if [ -f "$stamp" ] && grep -qx -- "$want" "$stamp" 2>/dev/null; then
    exit 0
fi

spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
if .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "==> keeping the installed torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
    torch_pin=()
else
    torch_pin=("torch==2.13.0")
fi
echo "==> installing DGX-Pixels Studio and its dependencies (first time: a few minutes)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${torch_pin[@]}" -e "$spec"
echo "$want" > "$stamp"
