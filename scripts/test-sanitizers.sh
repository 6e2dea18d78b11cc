#!/usr/bin/env bash
# The sanitizer stage of the tests (README "Tests", .ci/run): the whole test
# suite built with AddressSanitizer and UndefinedBehaviorSanitizer
# (-DVARPS_SANITIZE=ON, build-asan), where any report fails its test, then a
# short run of every fuzz target (scripts/fuzz.sh, build-fuzz).
#
#   scripts/test-sanitizers.sh [--fuzz-seconds N]   (default 5 per target)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzz_seconds=5
while (($# > 0)); do
  case "$1" in
    --fuzz-seconds) fuzz_seconds="$2"; shift 2 ;;
    *) echo "test-sanitizers.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVARPS_SANITIZE=ON -DVARPS_CUDA=OFF \
  -DVARPS_PYTHON=OFF -DVARPS_BUILD_BENCHMARKS=OFF -DVARPS_MPI=OFF
cmake --build build-asan
ctest --test-dir build-asan --output-on-failure -j2
scripts/fuzz.sh --seconds "$fuzz_seconds"
