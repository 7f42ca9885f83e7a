#!/usr/bin/env bash
# Set up everything (idempotent) and run the test suite. Extra arguments go to pytest, e.g.
#   scripts/test.sh -m "not slow"     the fast set only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export GPIOZERO_PIN_FACTORY=mock HF_HUB_OFFLINE=1
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests"; exit 0
fi
exit "$rc"
