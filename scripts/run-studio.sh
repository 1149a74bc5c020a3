#!/usr/bin/env bash
# One command: set everything up from nothing, then start the studio (flags pass through to `dgx-pixels serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=${GRADIO_ANALYTICS_ENABLED:-False}
exec .venv/bin/python app.py "$@"
