#!/usr/bin/env bash
# Builds the fuzz targets of tests/fuzz (clang-14, libFuzzer, ASan + UBSan)
# when needed, assembles their seed corpora, runs each target in turn and
# prints a table: executions, coverage, corpus size and findings per target.
# Exit status 1 when any target found something (its inputs are kept under
# <build-dir>/fuzz-artifacts/<target>/, its log under fuzz-logs/).
#
#   scripts/fuzz.sh [--seconds N] [--runs N] [--targets a,b,...] [--build-dir DIR]
#
# --seconds: time per target (default 60); --runs: stop a target after this
# many executions instead (still at most --seconds). A target's corpus
# (<build-dir>/fuzz-corpus/<target>) grows from run to run; the seeds are
# rebuilt from tests/data each time (tests/fuzz/make_corpus.py).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=60
runs=0
build=build-fuzz
all_targets=(pickle torch_zip safetensors png adapter stream_params tokens_json request_body edit_mask)
targets=("${all_targets[@]}")
while (($# > 0)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --targets) IFS=, read -r -a targets <<<"$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for t in "${targets[@]}"; do
  if [[ " ${all_targets[*]} " != *" $t "* ]]; then
    echo "fuzz.sh: unknown target '$t' (known: ${all_targets[*]})" >&2
    exit 2
  fi
done

# Which dictionaries each target gets (tests/fuzz/dict).
declare -A dicts=(
  [pickle]="pickle" [torch_zip]="torch_zip pickle" [safetensors]="safetensors json" [png]="png"
  [adapter]="safetensors json" [stream_params]="json" [tokens_json]="json" [request_body]="json" [edit_mask]="png"
)

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVARPS_FUZZ=ON -DVARPS_CUDA=OFF -DVARPS_BUILD_TESTS=OFF \
    -DVARPS_BUILD_BENCHMARKS=OFF -DVARPS_MPI=OFF -DVARPS_PYTHON=OFF
fi
cmake --build "$build" --target varps_fuzz_targets

rm -rf "$build/fuzz-seeds" "$build/fuzz-dict"
python3 tests/fuzz/make_corpus.py "$build/fuzz-seeds" >/dev/null
mkdir -p "$build/fuzz-dict" "$build/fuzz-logs"

export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=0
rows=()
for t in "${targets[@]}"; do
  corpus="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$corpus" "$artifacts"
  dict="$build/fuzz-dict/$t.dict"
  for d in ${dicts[$t]}; do cat "tests/fuzz/dict/$d.dict"; done >"$dict"
  before=$(find "$artifacts" -type f | wc -l)
  flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -dict="$dict" -print_final_stats=1
         -artifact_prefix="$artifacts/")
  ((runs > 0)) && flags+=(-runs="$runs")
  echo "fuzz.sh: $t (${seconds}s$( ((runs > 0)) && echo ", at most $runs runs"))" >&2
  rc=0
  "$build/tests/fuzz/fuzz_$t" "${flags[@]}" "$corpus" "$build/fuzz-seeds/$t" >"$log" 2>&1 || rc=$?
  found=$(($(find "$artifacts" -type f | wc -l) - before))
  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: K/..."), and
  # its final stats ("stat::number_of_executed_units: N").
  status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$status")
  result=ok
  if ((rc != 0 || found > 0)); then
    result="FOUND (exit $rc; see $log)"
    failed=1
  fi
  rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "fuzz_$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
            "${ft:-?}" "${corp:-?}" "$found" "$result")")
done

echo
echo "| target | executions | exec/s | coverage | features | corpus | new artifacts | result |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
exit "$failed"
