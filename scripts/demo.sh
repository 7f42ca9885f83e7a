#!/usr/bin/env bash
# Set up everything (idempotent) and run the offline demo. Extra arguments go to segue-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/segue-demo "$@"
