#!/usr/bin/env bash
# deps.sh: install exactly the Debian 12 packages unlearnd needs to build,
# test and run. Idempotent: does nothing when all are present; otherwise one
# `apt-get update` and one `apt-get install`. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config       # toolchain
  librdkafka-dev libavro-dev libhiredis-dev libopenblas-dev  # the four libraries
  libcmocka-dev                          # unit tests
  redis-server                           # local Redis for the embedded default and tests
  libmicrohttpd-dev                      # /metrics, /livez, /readyz
  libjemalloc-dev                        # malloc of the release build (CMakeLists.txt says why)
  libcurl4-openssl-dev libjansson-dev    # the Schema Registry client (HTTP, JSON)
  python3                                # tests/registry_standin.py, a local registry stand-in
  gnuplot-nox                            # figures in docs/results
  clang-format                           # format check in the test command
  python3-yaml                           # tests/integration/test_deploy_files.sh parses deploy/
  curl                                   # tests/integration/test_worker_metrics.sh reads /metrics
  kcat                                   # tests: a foreign producer/consumer (headers, raw records)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a system redis-server; unlearnd starts its own on a
# free port, so leave the system one as the package left it.
