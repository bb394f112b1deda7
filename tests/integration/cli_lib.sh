# cli_lib.sh: shared setup for the offline commands' integration tests
# (sourced, not a test itself): $bin (the unlearnd binary, first argument),
# $dir (a temporary directory removed on exit), fail MSG, and
# expect CODE PATTERN CMD...: CMD must exit with CODE and print PATTERN on
# stderr, and a failing CMD at most 3 lines (a short error, not a dump); its
# stdout is left in $dir/out, its stderr in $dir/err.
set -euo pipefail
bin="${1:?usage: $0 path/to/unlearnd}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {
  local code="$1" pattern="$2"; shift 2
  local rc=0
  "$@" >"$dir/out" 2>"$dir/err" || rc=$?
  [ "$rc" -eq "$code" ] || fail "'$*' exited $rc, expected $code; stderr: $(cat "$dir/err")"
  grep -q -- "$pattern" "$dir/err" || fail "'$*' stderr lacks '$pattern': $(cat "$dir/err")"
  [ "$code" -eq 0 ] || [ "$(wc -l <"$dir/err")" -le 3 ] || fail "'$*' printed more than a short error"
}
