#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing, build, run
# the C unit tests (ctest), the integration tests (pytest against the real
# binary) and the official openai SDK against it (node --test, tests/sdk),
# then the same again under AddressSanitizer + UBSan.
#   scripts/test.sh           everything
#   scripts/test.sh --quick   skip the sanitizer pass
# The last line sums up every runner's count.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=no
[ "${1:-}" = "--quick" ] && quick=yes

bash scripts/bootstrap.sh

summary=()
run_suite() { # build dir, then cmake args
  local dir=$1 out
  shift
  out=$(mktemp)
  echo "== build $dir $*"
  scripts/build.sh "$dir" "$@"
  echo "== unit tests ($dir)"
  (cd "$dir" && ctest --output-on-failure) | tee "$out"
  summary+=("$dir unit: $(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$out")")
  echo "== integration tests ($dir)"
  SLUICE_BUILD="$PWD/$dir" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration | tee "$out"
  summary+=("$dir integration: $(tail -n 1 "$out" | sed -E 's/^=+ //; s/ =+$//')")
  echo "== the official openai SDK (tests/sdk, $dir)"
  (cd tests/sdk && SLUICE_BUILD="$PWD/../../$dir" node --test --test-reporter=spec) | tee "$out"
  local pass fail
  pass=$(sed -nE 's/^ℹ pass ([0-9]+)$/\1/p' "$out")
  fail=$(sed -nE 's/^ℹ fail ([0-9]+)$/\1/p' "$out")
  echo "sdk: $pass passed, $fail failed"
  summary+=("$dir sdk: $pass passed, $fail failed")
  rm -f "$out"
}

if [ "$quick" = no ]; then
  BUILD_TYPE=Debug run_suite build-asan -DSLUICE_SANITIZE=ON
fi
run_suite build
echo "== all passed: $(IFS=';'; echo "${summary[*]}" | sed 's/;/; /g')"
