#!/usr/bin/env bash
# test.sh: install dependencies, build with ASan+UBSan (warnings as errors),
# check formatting, and run every test (unit and integration) under ctest.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh sanitize
scripts/check-format.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd build-asan
ctest --output-on-failure --timeout 900 "$@"
