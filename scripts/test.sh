#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing
# (scripts/bootstrap.sh --tests), build, run the C unit tests (ctest), the
# integration tests (pytest against the real binary) and the official openai
# SDK against it (node --test, tests/sdk), then the same again under
# AddressSanitizer + UBSan, and every libFuzzer target of tests/fuzz for a
# few seconds on its corpus (scripts/fuzz.sh all, SLUICE_FUZZ_SECONDS each).
#   scripts/test.sh           everything
#   scripts/test.sh --quick   skip the sanitizer pass and the fuzz targets
# Every runner runs even when an earlier one fails. The last line sums up
# every runner's counts and names the runners that failed; the exit status is
# non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=no
[ "${1:-}" = "--quick" ] && quick=yes

summary=() failed=()
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
finish() {
  local joined
  joined=$(IFS=';'; echo "${summary[*]-}" | sed 's/;/; /g')
  if [ ${#failed[@]} -eq 0 ]; then
    echo "== all passed: $joined"
    exit 0
  fi
  echo "== FAILED ($(IFS=','; echo "${failed[*]}" | sed 's/,/, /g')): $joined"
  exit 1
}

if ! bash scripts/bootstrap.sh --tests; then
  failed+=("bootstrap")
  summary+=("bootstrap: failed, nothing was built or run")
  finish
fi

# What a runner printed, without terminal colours.
plain() { sed -E 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1"; }
count() { # word, text: the number before the word, 0 if none
  echo "$2" | grep -oE "[0-9]+ $1" | head -n 1 | cut -d' ' -f1 | grep . || echo 0
}

record() { # name, exit status, passed, failed[, extra]
  local line="$1: $3 passed, $4 failed${5:+, $5}"
  summary+=("$line")
  if [ "$2" -ne 0 ] || [ "$4" -ne 0 ]; then failed+=("$1"); fi
  echo "== $line"
}

run_suite() { # build dir, then cmake args
  local dir=$1 out=$scratch/out rc text total nfail pass fail skip
  shift
  echo "== build $dir $*"
  if ! scripts/build.sh "$dir" "$@"; then
    summary+=("$dir: the build failed, its tests did not run")
    failed+=("$dir build")
    return
  fi

  echo "== unit tests ($dir)"
  (cd "$dir" && ctest --output-on-failure) 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  text=$(plain "$out" | grep -E 'tests? failed out of [0-9]+' | tail -n 1)
  total=$(echo "$text" | grep -oE 'out of [0-9]+' | grep -oE '[0-9]+' || echo 0)
  nfail=$(echo "$text" | grep -oE '[0-9]+ tests? failed' | grep -oE '^[0-9]+' || echo 0)
  [ -n "$text" ] || { total=0; nfail=0; [ "$rc" -eq 0 ] && rc=1; }
  record "$dir unit" "$rc" $((total - nfail)) "$nfail"

  echo "== integration tests ($dir)"
  SLUICE_BUILD="$PWD/$dir" /usr/bin/python3 -m pytest -q -p no:cacheprovider --color=no \
    --basetemp="$PWD/$dir/pytest-tmp" tests/integration 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  text=$(plain "$out" | grep -E '[0-9]+ (passed|failed|error|errors|skipped)' | tail -n 1)
  pass=$(count passed "$text")
  fail=$(( $(count failed "$text") + $(count error "$text") ))  # "1 error", "2 errors"
  skip=$(count skipped "$text")
  [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1  # it could not even collect or report
  record "$dir integration" "$rc" "$pass" "$fail" "$([ "$skip" -ne 0 ] && echo "$skip skipped")"

  echo "== the official openai SDK (tests/sdk, $dir)"
  (cd tests/sdk && SLUICE_BUILD="$PWD/../../$dir" node --test \
     --test-reporter=spec --test-reporter-destination=stdout \
     --test-reporter=tap --test-reporter-destination="$out.tap") 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  pass=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$out.tap" 2>/dev/null | tail -n 1)
  fail=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$out.tap" 2>/dev/null | tail -n 1)
  pass=${pass:-0} fail=${fail:-0}
  [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
  record "$dir sdk" "$rc" "$pass" "$fail"
}

run_fuzz() {
  local out=$scratch/out rc text pass fail
  echo "== the libFuzzer targets (tests/fuzz, ${SLUICE_FUZZ_SECONDS:-5} s each)"
  scripts/fuzz.sh all "${SLUICE_FUZZ_SECONDS:-5}" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  text=$(grep -E '^== fuzz: ' "$out" | tail -n 1)
  pass=$(count "targets passed" "$text")
  fail=$(count failed "$text")
  [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
  record "fuzz" "$rc" "$pass" "$fail"
}

if [ "$quick" = no ]; then
  BUILD_TYPE=Debug run_suite build-asan -DSLUICE_SANITIZE=ON
fi
run_suite build
[ "$quick" = no ] && run_fuzz
finish
