#!/usr/bin/env bash
# run.sh: install dependencies, build, and run `unlearnd demo` (the stream
# end to end on a local broker, Redis and worker it starts and stops itself).
# Extra arguments go to the command; `build/unlearnd eval` is the offline
# evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release >/dev/null
exec build/unlearnd demo "$@"
