#!/usr/bin/env bash
# Screenshots of every tab (and the clean-up before/after strip) for the README, into docs/screenshots/.
# Sets up the test environment (Playwright, Chromium) the way scripts/run-tests.sh does, then runs the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "!! Chromium is needed for screenshots (apt-get install chromium)" >&2
        exit 1
    fi
fi
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TRANSFORMERS_VERBOSITY=error OMP_NUM_THREADS=1
exec .venv/bin/python scripts/screenshots.py "$@"
