#!/usr/bin/env bash
# sluice with 100,000 keys: `sluice -t`, start-up, RSS, and SIGHUP reloads
# under load (failed requests, largest latency against the same load without).
#   scripts/bench-keys.sh      (BENCH_KEYS=100000 BENCH_SECONDS=6 BENCH_RELOADS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, python3: the benchmarks use the test harness
command -v wrk >/dev/null || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
}
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
SLUICE_BUILD="$PWD/build-release" /usr/bin/python3 scripts/bench_keys.py
