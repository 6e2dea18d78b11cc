#!/usr/bin/env bash
# For a lent GPU machine, which has CUDA, CMake, ninja and gcc but none of
# Debian's -dev packages: unpack the .deb files fetched into .deps/ (see
# docs/cuda.md) into a private prefix, build with the CUDA backend, run the
# tests, or benchmark. Logs and reports go to $OUT (default out-gpu).
#
#   usage: scripts/gpu-check.sh [bench|sizes]
#     (none): every test, the CUDA ones beside the CPU ones
#     bench:  benchmark d16 (bf16 and fp32, graphs on and off, P 1..64)
#     sizes:  benchmark d20, d24 and d30 (bf16, graphs on, P 1, 8, 32)
# Each fits one 10-minute device command once build-gpu exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-out-gpu}
mkdir -p "$out"

prefix=$PWD/.deps/root
if [[ ! -d $prefix/usr ]]; then
  ls .deps/*.deb >/dev/null 2>&1 || { echo "gpu-check: no .deb files in .deps/ (docs/cuda.md)" >&2; exit 1; }
  for deb in .deps/*.deb; do dpkg -x "$deb" "$prefix"; done
  # The .pc files name /usr (in variables and in -I/-L flags); point them at the prefix.
  grep -rl '/usr' "$prefix/usr" --include='*.pc' |
    xargs sed -i -E "s#(^[a-z_]+=|[[:space:]]-[IL])/usr(/|\$)#\1$prefix/usr\2#g"
fi
lib=$prefix/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_LIBDIR=$lib/openblas-openmp/pkgconfig:$lib/pkgconfig:$prefix/usr/share/pkgconfig
export LD_LIBRARY_PATH=$lib/openblas-openmp:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "no nvidia-smi"; } | tee "$out/gpu.txt"
cmake -S . -B build-gpu -G Ninja -DVARPS_CUDA=ON -DCMAKE_PREFIX_PATH="$prefix/usr;$lib/cmake;$prefix/usr/share/cmake" \
  -DCMAKE_INCLUDE_PATH="$prefix/usr/include" -DCMAKE_LIBRARY_PATH="$lib" 2>&1 | tee "$out/configure.log" | tail -3
cmake --build build-gpu 2>&1 | tee "$out/build.log" | tail -3
if [[ -z ${1:-} ]]; then
  ctest --test-dir build-gpu --output-on-failure -j4 2>&1 | tee "$out/ctest.log" | tail -15 || true
  ./build-gpu/tests/varps_tests --gtest_filter='*Cuda*:*cuda*' 2>&1 | grep -E '^\[ bf16' | tee "$out/bf16-agreement.txt" || true
fi

# Achieved rates are shown as fractions of NVIDIA's datasheet peaks for the
# H100 SXM (dense bf16 989 TFLOP/s, fp32 67 TFLOP/s, HBM3 3350 GB/s) when the
# device is one; elsewhere as rates only.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
peaks() {
  [[ $gpu == *H100*HBM3* ]] || return 0
  if [[ $1 == fp32 ]]; then echo "--peak-tflops 67 --peak-gbps 3350"; else echo "--peak-tflops 989 --peak-gbps 3350"; fi
}
bench() {  # preset precision graphs streams repeats
  # shellcheck disable=SC2046
  ./build-gpu/varps bench --device cuda --precision "$2" --cuda-graphs "$3" --preset "$1" --streams "$4" \
    --schedule batched --warmup 2 --repeats "$5" $(peaks "$2") --out "$out/bench-$1-$2-graphs-$3" --quiet | tail -24
}

case ${1:-} in
  bench)
    # bf16 and fp32 with graphs, and bf16 without, one after the other on the same machine.
    for run in bf16:on fp32:on bf16:off; do bench d16 "${run%:*}" "${run#*:}" 1,2,4,8,16,32,64 20; done
    ;;
  sizes)
    for preset in d20 d24 d30; do bench "$preset" bf16 on 1,8,32 10; done
    ;;
esac
