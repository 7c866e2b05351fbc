#!/usr/bin/env bash
# sluice against nginx on this machine, same run: throughput, latency, memory.
#   scripts/bench.sh        (BENCH_SECONDS=10 BENCH_CONNECTIONS=50 BENCH_STREAMS=1000)
# Installs what it needs (nginx-light, wrk, nginx's Lua module) from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, python3: the benchmarks use the test harness
need=()
for p in nginx-light wrk libnginx-mod-http-lua; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
SLUICE_BUILD="$PWD/build-release" /usr/bin/python3 scripts/bench.py
