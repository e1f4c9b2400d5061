#!/usr/bin/env bash
# Sets everything up and runs checkstream's main job on its embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/checkstream demo "$@"
