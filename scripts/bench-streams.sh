#!/usr/bin/env bash
# Concurrent streams through one sluice worker next to one nginx worker:
# every event delivered, peak RSS, CPU per relayed event.
#   scripts/bench-streams.sh      (BENCH_STREAMS=10000 BENCH_CHUNKS=30)
# The open-file limit caps the count (two sockets per stream in the proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, python3: the benchmarks use the test harness
if ! command -v nginx >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
ulimit -n "$(ulimit -Hn)"
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
SLUICE_BUILD="$PWD/build-release" /usr/bin/python3 scripts/bench_streams.py
