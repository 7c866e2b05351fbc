#!/usr/bin/env bash
# Redis cost of the rate limits: CPU per admission and memory per key.
#   scripts/bench-limits.sh            (BENCH_KEYS=50 BENCH_REQUESTS=4000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, python3: the benchmarks use the test harness
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
SLUICE_BUILD="$PWD/build-release" /usr/bin/python3 scripts/bench_limits.py
