#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing, build, run
# the C unit tests (ctest) and the integration tests (pytest against the real
# binary), then the same again under AddressSanitizer + UBSan.
#   scripts/test.sh           everything
#   scripts/test.sh --quick   skip the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
quick=no
[ "${1:-}" = "--quick" ] && quick=yes

bash scripts/bootstrap.sh

run_suite() { # build dir, then cmake args
  local dir=$1
  shift
  echo "== build $dir $*"
  scripts/build.sh "$dir" "$@"
  echo "== unit tests ($dir)"
  (cd "$dir" && ctest --output-on-failure)
  echo "== integration tests ($dir)"
  SLUICE_BUILD="$PWD/$dir" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
}

if [ "$quick" = no ]; then
  BUILD_TYPE=Debug run_suite build-asan -DSLUICE_SANITIZE=ON
fi
run_suite build
