#!/usr/bin/env bash
# One command: set everything up from nothing (including Chromium for the browser tests), then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing Chromium for the browser tests"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "!! Chromium not found and cannot be installed here: browser tests will be skipped" >&2
    fi
fi

export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TRANSFORMERS_VERBOSITY=error OMP_NUM_THREADS=1
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest "$@"
