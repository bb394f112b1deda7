#!/usr/bin/env bash
# run.sh: install dependencies, build, and run the main job on the embedded
# default. Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release >/dev/null
exec build/unlearnd eval "$@"
