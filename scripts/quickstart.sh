#!/usr/bin/env bash
# Quick start: build sluice, start the mock upstream and sluice with
# conf/sluice.conf.example, send one request and one streamed request
# through it, then keep both running until Ctrl-C.
#   SLUICE_PORT=8080 MOCK_PORT=9001 scripts/quickstart.sh   (the defaults)
#   SLUICE_BUILD=DIR    use the sluice and sluice-mock already built in DIR
# Fails, and says why, when either cannot start (a busy port, say).
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_PORT=${SLUICE_PORT:-8080}
MOCK_PORT=${MOCK_PORT:-9001}

say() { printf '== %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

if [ -n "${SLUICE_BUILD:-}" ] && [ -x "$SLUICE_BUILD/sluice" ] && [ -x "$SLUICE_BUILD/sluice-mock" ]; then
  bin=$SLUICE_BUILD
  say "using the build in $bin"
else
  bin=build
  say "installing what building and running sluice need (scripts/bootstrap.sh)"
  bash scripts/bootstrap.sh
  say "building into build/ (scripts/build.sh; a minute the first time)"
  scripts/build.sh build >/dev/null || die "the build failed (above)"
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_busy "$MOCK_PORT" && die "port $MOCK_PORT is taken by another program; set MOCK_PORT to a free one"
port_busy "$SLUICE_PORT" && die "port $SLUICE_PORT is taken by another program; set SLUICE_PORT to a free one"

# The example, on the ports asked for.
run=$(mktemp -d /tmp/sluice-quickstart.XXXXXX)
conf=$run/sluice.conf
sed -e "s/^listen = 127.0.0.1:8080/listen = 127.0.0.1:$SLUICE_PORT/" \
    -e "s#^url = http://127.0.0.1:9001/v1#url = http://127.0.0.1:$MOCK_PORT/v1#" \
    conf/sluice.conf.example >"$conf"
chmod 600 "$conf"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

# Waits until pid answers on port; dies with its log if it exits or never does.
wait_for() {
  local name=$1 pid=$2 port=$3 log=$4
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name exited before it listened on port $port"; }
    curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
    [ "$name" = "the mock upstream" ] && port_busy "$port" && return 0
    sleep 0.1
  done
  cat "$log" >&2
  die "$name did not answer on port $port within 10 s"
}

say "starting the mock upstream on 127.0.0.1:$MOCK_PORT ($bin/sluice-mock)"
"$bin/sluice-mock" --port "$MOCK_PORT" --api-key mock-upstream-key 2>"$run/mock.log" &
pids+=($!)
wait_for "the mock upstream" "${pids[0]}" "$MOCK_PORT" "$run/mock.log"
say "starting sluice on 127.0.0.1:$SLUICE_PORT with $conf"
"$bin/sluice" -c "$conf" 2> >(tee "$run/sluice.log" >&2) &
pids+=($!)
wait_for "sluice" "${pids[1]}" "$SLUICE_PORT" "$run/sluice.log"

KEY=sk-sluice-demo-key
URL=http://127.0.0.1:$SLUICE_PORT/v1/chat/completions
echo
echo "\$ curl $URL -H 'Authorization: Bearer $KEY' -d '{...}'"
curl -sSf "$URL" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}]}' ||
  die "the request through sluice failed"
echo
echo "\$ (the same, streamed)"
curl -sSfN "$URL" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"Say hello"}]}' ||
  die "the streamed request through sluice failed"
echo
echo "sluice is serving on http://127.0.0.1:$SLUICE_PORT (key: $KEY). Ctrl-C stops it."
echo "Next, a gateway of your own: README.md, \"Your own gateway\" (docs/operations.md has every step)."
wait
