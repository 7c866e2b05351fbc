#!/usr/bin/env bash
# Quick start: build sluice, start the mock upstream on 127.0.0.1:9001 and
# sluice with conf/sluice.conf.example on 127.0.0.1:8080, send one request and
# one streamed request through it, then keep both running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >/dev/null
scripts/build.sh build >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

./build/sluice-mock --port 9001 --api-key mock-upstream-key &
pids+=($!)
./build/sluice -c conf/sluice.conf.example &
pids+=($!)
for _ in $(seq 50); do curl -fs http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break; sleep 0.1; done

KEY=sk-sluice-demo-key
echo
echo "\$ curl http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer $KEY' -d '{...}'"
curl -sS http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}]}'
echo
echo "\$ (the same, streamed)"
curl -sSN http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"Say hello"}]}'
echo
echo "sluice is serving on http://127.0.0.1:8080 (key: $KEY). Ctrl-C stops it."
wait
