#!/usr/bin/env bash
# The cost of choosing a backend: microseconds per pick (and its report) for
# each [server] balance strategy with 2, 16 and 128 backends of one model,
# in a Release build. The table goes into docs/pool.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, python3: the benchmarks use the test harness
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
build-release/test_pool --bench
