#!/usr/bin/env bash
# build.sh [release|sanitize]: configure and build into build/ (release) or
# build-asan/ (ASan+UBSan, warnings as errors: the test build).
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-release}"
case "$kind" in
  release)  dir=build;      flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Release -DUNLEARND_SANITIZE=ON -DUNLEARND_WERROR=ON) ;;
  *) echo "usage: scripts/build.sh [release|sanitize]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
