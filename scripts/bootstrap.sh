#!/usr/bin/env bash
# Install every Debian package that building, running and testing sluice needs,
# and the npm packages of the SDK suite (tests/sdk, pinned by its lock file).
# Safe to run any number of times: what is there already is skipped.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libevent-dev libcurl4-openssl-dev libhiredis-dev libcjson-dev libssl-dev libinih-dev
  redis-server python3 python3-pytest curl openssl nginx-light
  ca-certificates   # https backends: without it every TLS check fails (it is only "recommended")
  prometheus        # promtool: the suite checks and unit-tests conf/prometheus/sluice-alerts.yml
  chromium          # headless, for the status page's test (tests/integration/test_status_page.py)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm for the SDK suite (tests/sdk); any Node >= 18 will do.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

# The official openai SDK at the version tests/sdk/package-lock.json pins.
npm_packages() {
  local sdk
  sdk="$(dirname "$0")/../tests/sdk"
  if [ ! -f "$sdk/node_modules/openai/package.json" ] ||
     [ "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
    (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "bootstrap: installed the npm packages of tests/sdk (npm ci)"
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#packages[@]} packages present"
  npm_packages
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: installing them needs root, and sudo is not installed. Run this script as root," >&2
    echo "  or as root: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Tests start their own redis-server and nginx on free ports; the packaged services are not needed.
for service in redis-server nginx; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done
echo "bootstrap: installed ${missing[*]}"
npm_packages
