#!/usr/bin/env bash
# Configure and build into DIR (default build/). Extra arguments go to cmake.
#   scripts/build.sh [DIR] [-DSLUICE_SANITIZE=ON ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
