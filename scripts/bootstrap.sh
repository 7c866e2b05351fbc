#!/usr/bin/env bash
# Installs the Debian packages that sluice needs, and nothing more:
#   scripts/bootstrap.sh           building and running it (the quick start)
#   scripts/bootstrap.sh --tests   also the test suite's: redis, nginx, pytest,
#                                  Node.js and npm, promtool, chromium, and the
#                                  npm packages of tests/sdk (pinned by its lock file)
# Safe to run any number of times: what is there already is skipped. As root,
# or as a user with sudo. Every slow step says what it does; an archive or
# registry that cannot be reached gets one line saying which, and what to do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tests=no
[ "${1:-}" = "--tests" ] && tests=yes

say() { printf 'bootstrap: %s\n' "$*"; }

# Building and running: a C compiler, cmake, the libraries, curl (the quick
# start's requests) and the trust store (https backends: Debian only
# recommends it, and without it every TLS check fails).
packages=(
  gcc libc6-dev make cmake pkg-config
  libevent-dev libcurl4-openssl-dev libhiredis-dev libcjson-dev libssl-dev libinih-dev
  curl ca-certificates
)
if [ "$tests" = yes ]; then
  packages+=(
    redis-server python3 python3-pytest openssl nginx-light
    python3-cryptography  # tests/integration/test_jwt.py signs tokens with keys openssl made
    nodejs npm        # tests/sdk: the official openai SDK (Debian's Node 18 will do)
    prometheus        # promtool: checks and unit-tests conf/prometheus/sluice-alerts.yml
    chromium          # headless, for the status page's test
    systemd           # systemd-analyze verify/security on conf/sluice.service
    iproute2          # ss: the listening socket's backlog
    clang libclang-rt-dev  # the libFuzzer targets (scripts/fuzz.sh), with ASan + UBSan
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Node.js installed some other way (nodesource, nvm) serves as well as Debian's.
if [ "$tests" = yes ] && command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  kept=()
  for p in "${missing[@]}"; do case $p in nodejs|npm) ;; *) kept+=("$p") ;; esac; done
  missing=("${kept[@]+"${kept[@]}"}")
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# One line for a network failure, naming what could not be reached.
unreachable() { # log
  grep -qiE "could not resolve|temporary failure|failed to fetch|unable to connect|connection (refused|timed out)|network is unreachable|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET" "$1"
}

apt_install() {
  local sudo="" sources
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      say "missing Debian packages: ${missing[*]}" >&2
      say "installing them needs root, and sudo is not installed. Run this script as root," >&2
      echo "  or as root: apt-get install --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  sources=$( { grep -rhoE '^(deb|URIs:) +(\[[^]]*\] +)?[a-z]+://[^ ]+' /etc/apt/sources.list \
               /etc/apt/sources.list.d 2>/dev/null || true; } | awk '{print $NF}' | sort -u | tr '\n' ' ')
  export DEBIAN_FRONTEND=noninteractive
  say "reading the package lists (apt-get update)"
  if ! $sudo apt-get update -qq >"$log" 2>&1 || grep -qE '^(W|E): Failed to fetch' "$log"; then
    if unreachable "$log"; then
      say "the Debian archive cannot be reached (${sources% }): check the network, a proxy (apt's Acquire::http::Proxy), or /etc/apt/sources.list, then run this again" >&2
      exit 1
    fi
    grep -q '^E:' "$log" && { cat "$log" >&2; exit 1; }
  fi
  say "installing ${#missing[@]} Debian packages and what they need (a few minutes the first time): ${missing[*]}"
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    if unreachable "$log"; then
      say "the Debian archive cannot be reached (${sources% }): check the network, a proxy (apt's Acquire::http::Proxy), or /etc/apt/sources.list, then run this again" >&2
    else
      tail -n 20 "$log" >&2
      say "apt-get install failed (above)" >&2
    fi
    exit 1
  fi
  say "installed $(grep -c '^Setting up ' "$log") packages"
  # Tests start their own redis-server and nginx on free ports; the packaged services are not needed.
  for service in redis-server nginx; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
      $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
}

# The official openai SDK at the version tests/sdk/package-lock.json pins.
npm_packages() {
  local sdk=$here/../tests/sdk registry
  if [ -f "$sdk/node_modules/openai/package.json" ] &&
     [ ! "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
    return 0
  fi
  registry=$(cd "$sdk" && npm config get registry 2>/dev/null || echo https://registry.npmjs.org/)
  say "installing the npm packages of tests/sdk from $registry (npm ci)"
  if ! (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error --fetch-retries=1 --fetch-timeout=60000 \
        --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000) >"$log" 2>&1; then
    if unreachable "$log"; then
      say "the npm registry $registry cannot be reached: the SDK tests need the openai package from it; check the network or a proxy (npm_config_https_proxy), or point npm_config_registry at a mirror, then run this again" >&2
    elif grep -qE "SELF_SIGNED_CERT|UNABLE_TO_VERIFY|unable to get local issuer|CERT_HAS_EXPIRED|ERR_TLS_CERT" "$log"; then
      say "the npm registry $registry answered with a certificate Node.js does not trust (an intercepting proxy?): point NODE_EXTRA_CA_CERTS or npm_config_cafile at that CA's PEM file, then run this again" >&2
    else
      tail -n 20 "$log" >&2
      say "npm ci in tests/sdk failed (above)" >&2
    fi
    exit 1
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  say "all ${#packages[@]} Debian packages present"
else
  apt_install
fi
[ "$tests" = yes ] && npm_packages
exit 0
