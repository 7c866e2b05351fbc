#!/usr/bin/env bash
# A fleet's capacity on one machine: N sluice nodes against a 3-shard Redis
# Cluster; limited requests per second and Redis CPU per request per shard.
#   scripts/bench-fleet.sh        (BENCH_NODES=2 BENCH_KEYS=30 BENCH_REQUESTS=6000)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, redis-cli, python3: the test harness
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
SLUICE_BUILD="$PWD/build-release" /usr/bin/python3 scripts/bench_fleet.py
