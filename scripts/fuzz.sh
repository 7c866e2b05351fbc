#!/usr/bin/env bash
# Runs a libFuzzer target of tests/fuzz for a while, on its seeds in
# tests/fuzz/corpus/TARGET and what earlier runs found (build-fuzz/corpus/TARGET).
#   scripts/fuzz.sh TARGET SECONDS   one target (http, json, usage, sse, multipart, config, resp, owners, keys, xlate)
#   scripts/fuzz.sh all SECONDS      each target in turn, SECONDS each
#   scripts/fuzz.sh list             the targets
# Builds build-fuzz with clang (ASan + UBSan + libFuzzer) first. Prints one
# line per target (runs, coverage, corpus) and a last line that sums them up;
# exits non-zero when a target fails: its input is kept in
# build-fuzz/artifacts/ and the line shows how to replay it. What a fuzzer
# finds becomes a regression test (tests/fuzz/corpus/TARGET/, a named seed).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${SLUICE_FUZZ_BUILD:-build-fuzz}
[[ $dir = /* ]] || dir=$root/$dir
targets=()
for f in tests/fuzz/fuzz_*.c; do t=${f##*/fuzz_}; targets+=("${t%.c}"); done

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
[ $# -eq 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || usage
want=$1 seconds=$2
if [ "$want" = all ]; then
  run=("${targets[@]}")
else
  [[ " ${targets[*]} " == *" $want "* ]] || { echo "fuzz: no target $want (scripts/fuzz.sh list)" >&2; exit 2; }
  run=("$want")
fi

command -v clang >/dev/null || { echo "fuzz: clang is missing (scripts/bootstrap.sh --tests installs it)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== build $dir (clang, libFuzzer, ASan + UBSan)"
CC=clang cmake -S . -B "$dir" -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/build.log" 2>&1 &&
  cmake --build "$dir" -j"$(nproc)" >>"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; echo "== fuzz: 0 targets passed, ${#run[@]} failed (the build failed)"; exit 1; }
mkdir -p "$dir/artifacts"
passed=0 failed=() total_runs=0
for t in "${run[@]}"; do
  corpus=$dir/corpus/$t
  mkdir -p "$corpus"
  log=$work/$t.log
  # Findings go to the corpus in build-fuzz, never to the seeds in the repository.
  (cd "$work" && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$dir/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" \
       "$corpus" "$root/tests/fuzz/corpus/$t") >"$log" 2>&1
  rc=$?
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)$/\1/p' "$log" | tail -n 1)
  done_line=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1)
  cov=$(echo "$done_line" | grep -oE 'cov: [0-9]+' | cut -d' ' -f2)
  ft=$(echo "$done_line" | grep -oE 'ft: [0-9]+' | cut -d' ' -f2)
  corp=$(echo "$done_line" | grep -oE 'corp: [0-9]+/[0-9A-Za-z]+' | cut -d' ' -f2)
  runs=${runs:-0}
  total_runs=$((total_runs + runs))
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: $runs runs in ${seconds}s, coverage ${cov:-?} edges ${ft:-?} features, corpus ${corp:-?}"
  else
    failed+=("$t")
    cp "$log" "$dir/artifacts/$t.log"
    grep -E 'ERROR|does not hold|fuzz_|SUMMARY|Test unit written' "$log" | grep -v '^INFO' | head -n 8
    echo "fuzz $t: its whole output is in $dir/artifacts/$t.log"
    art=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    echo "fuzz $t: FAILED after $runs runs${art:+; replay: $dir/fuzz_$t $art}"
  fi
done
if [ ${#failed[@]} -eq 0 ]; then
  echo "== fuzz: ${#run[@]} targets passed, 0 failed ($total_runs runs)"
  exit 0
fi
echo "== fuzz: $passed targets passed, ${#failed[@]} failed (${failed[*]}) ($total_runs runs)"
exit 1
