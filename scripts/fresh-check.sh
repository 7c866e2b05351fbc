#!/usr/bin/env bash
# The README's promise, checked as a newcomer meets it: a minimal Debian
# bookworm root (debootstrap --variant=minbase, built once and cached), this
# working tree copied in, and the README's two commands run there --
# scripts/quickstart.sh, then scripts/test.sh -- in a PID namespace of their
# own, so nothing they do can signal a process outside. Prints each command's
# result and wall time, the packages the quick start installed, what was left
# in /tmp and which processes outlived the tests. Not part of CI (too slow).
#
#   scripts/fresh-check.sh [options]
#     --path DIR        where the clone sits in the root (default /root/sluice,
#                       with --user /home/dev/sluice; try "/srv/my sluice")
#     --user            run both commands as an ordinary user with sudo
#                       (default: as root, without sudo)
#     --node FILE       copy this node binary to /usr/local/bin first (a newer
#                       Node next to Debian's); default: Debian's own Node 18
#     --only quickstart|test
#     --test-args ARGS  passed to scripts/test.sh (e.g. --quick)
#     --tree DIR        check that working tree instead of this one
#     --keep            keep the root (its path is printed) instead of removing it
# Needs root (debootstrap, chroot, mounts). The cache is in
# $SLUICE_FRESH_CACHE (default /var/cache/sluice-fresh), the scratch root in
# $SLUICE_FRESH_SCRATCH (default /var/tmp). Exit 0 when every command run passed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

path="" user=no node_bin="" only="" test_args="" keep=no
while [ $# -gt 0 ]; do
  case $1 in
    --path) path=$2; shift 2 ;;
    --user) user=yes; shift ;;
    --node) node_bin=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --test-args) test_args=$2; shift 2 ;;
    --keep) keep=yes; shift ;;
    --tree) src=$(cd "$2" && pwd); shift 2 ;;
    *) echo "fresh-check: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$path" ] || { [ "$user" = yes ] && path=/home/dev/sluice || path=/root/sluice; }
case $path in /*) ;; *) echo "fresh-check: --path must be absolute" >&2; exit 2 ;; esac
case $only in ""|quickstart|test) ;; *) echo "fresh-check: --only quickstart or test" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: run it as root (debootstrap, chroot and mounts need it)" >&2; exit 2; }
for tool in unshare chroot mount tar; do
  command -v $tool >/dev/null || { echo "fresh-check: $tool is missing" >&2; exit 2; }
done

say() { printf 'fresh-check: %s\n' "$*"; }
cache=${SLUICE_FRESH_CACHE:-/var/cache/sluice-fresh}
mirror=${SLUICE_FRESH_MIRROR:-http://deb.debian.org/debian}
base=$cache/bookworm-minbase.tar

# 1. The cached minimal root.
if [ ! -s "$base" ]; then
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap (apt-get)"
    apt-get install -y -qq debootstrap >/dev/null
  fi
  mkdir -p "$cache"
  build=$(mktemp -d "$cache/build.XXXXXX")
  say "building a minimal bookworm root with debootstrap (once; about a minute)"
  debootstrap --variant=minbase bookworm "$build/root" "$mirror" >"$build/debootstrap.log" 2>&1 ||
    { tail -20 "$build/debootstrap.log" >&2; rm -rf "$build"; say "debootstrap failed"; exit 1; }
  tar -C "$build/root" -cf "$base.part" . && mv "$base.part" "$base"
  rm -rf "$build"
fi

# 2. A scratch root from it, set up as a freshly installed machine is.
work=$(mktemp -d "${SLUICE_FRESH_SCRATCH:-/var/tmp}/sluice-fresh.XXXXXX")
root=$work/root
mkdir "$root"
cleanup() {
  if [ "$keep" = yes ]; then say "the root is kept in $root"; else rm -rf "$work"; fi
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# This machine's way out, which any machine on its network has too: the local
# CAs of an intercepting proxy (ca-certificates adds them to the store when
# it is installed; NODE_EXTRA_CA_CERTS, if set here, points a Node.js that
# does not read the store at it) and the proxy variables, passed on below.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
proxy_env=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY NODE_EXTRA_CA_CERTS; do
  [ -n "${!v:-}" ] && proxy_env+=("$v=${!v}")
done
if [ -n "$node_bin" ]; then
  install -m 755 "$node_bin" "$root/usr/local/bin/node"
fi

# The working tree: what git tracks plus new files it does not ignore.
mkdir -p "$root$path"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z -co --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -)
else
  tar -C "$src" --exclude='./build*' --exclude=node_modules --exclude=.git -cf - .
fi | tar -C "$root$path" -xf -
mkdir -p "$root/fresh-check"
chmod 1777 "$root/fresh-check"  # the user's quick start writes its PID there

# 3. What runs inside: the README's commands, timed, and what they leave behind.
cat >"$root/fresh-check/inner.sh" <<'INNER'
#!/bin/bash
set -u
out=/fresh-check
cd "$CLONE"
packages() { dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed'; }
leftovers() { # what is in /tmp, and every process but this one and PID 1
  local d p cmd
  for d in /tmp/* /tmp/.[!.]*; do [ -e "$d" ] && echo "tmp: $d"; done
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] || [ "$p" = "$BASHPID" ] || [ "$p" = "$$" ] && continue
    cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    [ -n "$cmd" ] && echo "process: $p $cmd"
  done
  return 0
}
as_user() { if [ "$RUN_AS" = root ]; then "$@"; else runuser -u "$RUN_AS" -- "$@"; fi; }
echo "node before: $(command -v node || echo none)" >"$out/result"
echo "packages before: $(packages)" >>"$out/result"

if [ "$ONLY" != test ]; then
  start=$(date +%s%N)
  # In a session of its own, so that it and everything it started stop as
  # Ctrl-C would stop them.
  as_user setsid bash -c 'echo $$ >/fresh-check/quickstart.pid; exec scripts/quickstart.sh' \
    >"$out/quickstart.log" 2>&1 &
  status=failed
  for _ in $(seq 12000); do  # 20 min
    grep -q "sluice is serving" "$out/quickstart.log" && { status=serving; break; }
    jobs -r | grep -q . || break
    sleep 0.1
  done
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  took=$(printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)))
  if [ $status = serving ]; then  # the README's own request
    curl -sS http://127.0.0.1:8080/v1/chat/completions \
      -H 'Authorization: Bearer sk-sluice-demo-key' -H 'Content-Type: application/json' \
      -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}' >"$out/readme-curl.txt" 2>&1
    grep -q '"chat.completion"' "$out/readme-curl.txt" || status="serving, but the README's curl failed"
  fi
  sid=$(cat "$out/quickstart.pid" 2>/dev/null || true)
  [ -n "$sid" ] && kill -INT -- -"$sid" 2>/dev/null
  wait
  sleep 0.5
  echo "quickstart: $status after $took s" >>"$out/result"
  echo "packages after the quick start: $(packages)" >>"$out/result"
  leftovers >"$out/left"
  sed 's/^/after the quick start: /' "$out/left" >>"$out/result"
fi

if [ "$ONLY" != quickstart ]; then
  start=$(date +%s)
  # shellcheck disable=SC2086
  as_user scripts/test.sh $TEST_ARGS >"$out/test.log" 2>&1
  rc=$?
  echo "test: exit $rc after $(( $(date +%s) - start )) s" >>"$out/result"
  echo "test summary: $(tail -n 1 "$out/test.log")" >>"$out/result"
  echo "packages after the tests: $(packages)" >>"$out/result"
  sleep 1
  leftovers >"$out/left"
  sed 's/^/after the tests: /' "$out/left" >>"$out/result"
fi
echo "node after: $(node --version 2>/dev/null || echo none) at $(command -v node || echo -)" >>"$out/result"
INNER
chmod 755 "$root/fresh-check/inner.sh"

run_as=root
if [ "$user" = yes ]; then
  run_as=dev
  say "adding the user dev, with sudo"
  chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo &&
    useradd -m -s /bin/bash dev && echo "dev ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/dev' \
    >"$work/user.log" 2>&1 || { cat "$work/user.log" >&2; say "could not add the user"; exit 1; }
  chroot "$root" chown -R dev:dev "$path"
  case $path in /home/dev/*) chroot "$root" chown dev:dev /home/dev ;; esac
fi

say "root $root, clone $path, as $run_as$([ -n "$node_bin" ] && echo ", node $("$node_bin" --version)")"
say "running$([ "$only" != test ] && echo " scripts/quickstart.sh")$([ -z "$only" ] && echo " and")$([ "$only" != quickstart ] && echo " scripts/test.sh $test_args") inside (logs: $root/fresh-check/)"
t0=$(date +%s)
# A session of its own as well as PID and mount namespaces: a "kill 0" inside
# (a process group of 0 is the caller's own) cannot reach this script's group.
setsid --wait unshare --pid --fork --kill-child --mount --propagation private -- /bin/bash -c '
  set -e
  root=$1; shift
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  exec chroot "$root" /usr/bin/env -i "$@" /fresh-check/inner.sh
' fresh-check "$root" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM="${TERM:-dumb}" "${proxy_env[@]+"${proxy_env[@]}"}" CLONE="$path" RUN_AS="$run_as" ONLY="$only" TEST_ARGS="$test_args" || true

echo
cat "$root/fresh-check/result" 2>/dev/null || say "no result: the run inside failed to start"
say "wall time $(( $(date +%s) - t0 )) s"
ok=yes
if [ "$only" != test ]; then
  grep -q '^quickstart: serving after' "$root/fresh-check/result" 2>/dev/null ||
    { ok=no; echo "--- quickstart.log (last 30 lines)"; tail -n 30 "$root/fresh-check/quickstart.log" 2>/dev/null || true; }
fi
if [ "$only" != quickstart ]; then
  grep -q '^test: exit 0 ' "$root/fresh-check/result" 2>/dev/null ||
    { ok=no; echo "--- test.log (failures)"; grep -E '^(FAILED|ERROR)|not ok|failed' "$root/fresh-check/test.log" | tail -n 40 || true; }
  grep -q '^after the tests: ' "$root/fresh-check/result" && { ok=no; say "the tests left something behind (above)"; }
fi
if [ "$ok" = yes ]; then say "passed"; exit 0; fi
[ "$keep" = yes ] || keep=yes  # keep the logs of a failure
say "FAILED"
exit 1
