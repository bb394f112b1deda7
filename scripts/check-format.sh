#!/usr/bin/env bash
# check-format.sh: fail when a tracked C file differs from .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check-format: clang-format missing" >&2; exit 1; }
bad=()
while IFS= read -r f; do
  [ -f "$f" ] || continue
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null; git ls-files --others --exclude-standard '*.c' '*.h' 2>/dev/null)
if [ ${#bad[@]} -gt 0 ]; then
  echo "check-format: run 'clang-format -i' on: ${bad[*]}" >&2
  exit 1
fi
