#!/usr/bin/env bash
# Fuzzes the hostile-input surfaces with libFuzzer (tests/fuzz/): the API
# request parser, the RFC 3339 parser, the signed-URL verifier and the CSV
# writer. Installs clang and libFuzzer if missing, builds the `fuzz` preset
# (build-fuzz/, ASan+UBSan), runs each target for SECONDS on a temporary copy
# of its seed corpus (tests/fuzz/corpus/<target>/ is never written to), then
# reads the CSV writer's outputs for the seeds and for everything the fuzzer
# found back with Python's csv module. Fails on any crash, leak, timeout,
# out-of-memory, sanitizer report or broken invariant; prints executions per
# target.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # longer
#
# A failure leaves the crashing input in build-fuzz/artifacts/; replay it
# with `build-fuzz/bin/<target> <file>`, and keep it as a regression seed in
# tests/fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
case "$seconds" in
  ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [seconds-per-target]" >&2; exit 2 ;;
esac
targets=(fuzz_api_request fuzz_rfc3339 fuzz_signed_url fuzz_csv_writer)

# -- what the fuzz build needs beyond scripts/setup.sh, installed the same
# way (only what is missing): clang, its runtime (libclang_rt.fuzzer, ASan,
# UBSan: libclang-rt-14-dev) and llvm-symbolizer (llvm-14) for readable
# stack traces in a report.
scripts/setup.sh
packages=(clang libclang-rt-14-dev llvm-14)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -ne 0 ]; then
  echo "fuzz: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# EXPORTENGINE_WERROR=ON (CI) turns clang's warnings into errors too.
cmake --preset fuzz -DEXPORTENGINE_WERROR="${EXPORTENGINE_WERROR:-OFF}" >/dev/null
cmake --build --preset fuzz

work="$(mktemp -d "${TMPDIR:-/tmp}/exportengine-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
artifacts="build-fuzz/artifacts"
mkdir -p "$artifacts"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=0
declare -A execs status corpus_size
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp tests/fuzz/corpus/"$t"/* "$work/$t/"
  log="$work/$t.log"
  echo "fuzz: $t for ${seconds}s" >&2
  set +e
  build-fuzz/bin/"$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "$work/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs[$t]="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  corpus_size[$t]="$(find "$work/$t" -type f | wc -l)"
  # libFuzzer exits non-zero on a crash, leak, timeout or OOM; a sanitizer
  # report without one (it should not happen with halt_on_error) fails too.
  if [ "$rc" -ne 0 ] || grep -a -q -E '^(==[0-9]+==ERROR|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer|INVARIANT BROKEN)|runtime error:' "$log"; then
    status[$t]="FAILED (exit $rc)"
    failed=$((failed + 1))
    echo "---- $t: last lines of its log ($log kept in $artifacts/$t.log) ----" >&2
    cp "$log" "$artifacts/$t.log"
    grep -a -v '^#[0-9]' "$log" | tail -40 >&2
  else
    status[$t]="ok"
  fi
done

# -- the CSV writer's output read back by Python's csv module: every seed and
# every input the fuzzer kept, each written by fuzz_csv_writer into a dump.
csv_check="skipped"
if [ "${status[fuzz_csv_writer]}" = "ok" ]; then
  mkdir -p "$work/csv-dump"
  # Executes each file once (no fuzzing) and dumps what it wrote.
  find "$work/fuzz_csv_writer" -type f -print0 |
    EXPORTENGINE_FUZZ_CSV_DUMP="$work/csv-dump" xargs -0 -n 500 build-fuzz/bin/fuzz_csv_writer \
      >"$work/csv-dump.log" 2>&1 || { echo "fuzz: dumping CSV failed" >&2; tail -20 "$work/csv-dump.log" >&2; }
  if grep -a -q -E 'INVARIANT BROKEN|ERROR: ' "$work/csv-dump.log"; then
    csv_check="FAILED"
    failed=$((failed + 1))
  elif python3 tests/fuzz/csv_python_check.py "$work/csv-dump" >"$work/csv-check.log" 2>&1; then
    csv_check="ok ($(tail -1 "$work/csv-check.log"))"
  else
    csv_check="FAILED"
    failed=$((failed + 1))
    tail -20 "$work/csv-check.log" >&2
  fi
fi

echo
printf '%-18s %14s %10s %8s  %s\n' target executions "exec/s" corpus result
total_ok=0
for t in "${targets[@]}"; do
  e="${execs[$t]:-?}"
  rate="?"
  if [[ "$e" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ]; then rate=$((e / seconds)); fi
  printf '%-18s %14s %10s %8s  %s\n' "$t" "$e" "$rate" "${corpus_size[$t]}" "${status[$t]}"
  [ "${status[$t]}" = "ok" ] && total_ok=$((total_ok + 1))
done
echo "python csv read-back: $csv_check"
echo "(${seconds}s per target, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
[ "$csv_check" != "FAILED" ] && [ "$csv_check" != "skipped" ] && total_ok=$((total_ok + 1))
echo "fuzz: $total_ok passed, $failed failed"
[ "$failed" -eq 0 ]
