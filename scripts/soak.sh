#!/usr/bin/env bash
# A 10-minute soak: mixed traffic (plain, streams, slow streams, multipart,
# rpm, budget and queueing keys) with upstream faults (5xx, resets, cut and
# stalled streams) and a SIGHUP every 30 s, against a Release build, a private
# redis-server and the mock upstream. Prints RSS, open files and requests in
# flight every minute; fails if a request is lost or any of them drifts.
#   scripts/soak.sh [SECONDS]     (default 600; SOAK_CLIENTS=8 threads)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -le 1 ] && [[ "${1:-600}" =~ ^[0-9]+$ ]] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
bash scripts/bootstrap.sh --tests >/dev/null  # redis-server, python3: the soak uses the test harness
BUILD_TYPE=Release scripts/build.sh build-release >/dev/null
SOAK_SECONDS=${1:-600} SLUICE_BUILD="$PWD/build-release" exec /usr/bin/python3 scripts/soak.py
