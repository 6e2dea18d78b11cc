#!/usr/bin/env bash
# The device check in one command (docs/cuda.md, "Running the device check").
#
#   usage: scripts/gpu-check.sh [--rehearse | --no-gpu | bench | sizes]
#
#   (none)      On the lent GPU machine, with `.deps` carried (fill it first
#               with scripts/fetch-gpu-deps.sh): unpack the carried .deb files
#               into a private prefix, build varps and its tests against them
#               with every core, run the CUDA tests, `varps bench --device
#               cuda` on d16 (bf16, graphs on, P = 1, 8, 64), then the official
#               VAR on the same GPU (fp16 autocast + TF32, batch 1, 8, 64).
#               Each phase has its own time limit (the sum is under 8 minutes)
#               and a failing phase does not stop the later ones. The last
#               lines are one table; the logs and JSON are packed into
#               $OUT/gpu-check-logs.tar.gz, the table is $OUT/gpu-check-table.txt.
#   --rehearse  On a Debian 12 machine without a GPU: every step that needs
#               none, in a clean root made with debootstrap (.rehearsal/root:
#               Debian 12 minbase plus cmake, ninja-build, g++, python3 and
#               python3-torch, standing in for the lent machine, which has no
#               -dev package), with /usr/local/cuda and the repository
#               bind-mounted into it and the steps run there under chroot:
#               unpack, build against only the carried packages, the CPU
#               tests, the CUDA bench failing fast, a tiny CPU bench (to check
#               the table), the official VAR on the CPU for one tiny batch.
#               Needs root, or sudo; runs at nice 19.
#   --no-gpu    The rehearsal's steps on this machine as it is (what
#               --rehearse runs inside its root; on a machine with the -dev
#               packages installed it proves nothing about .deps).
#   bench       After the build: d16 in bf16 and fp32 with graphs, and bf16
#               without, P = 1..64.
#   sizes       After the build: d20, d24 and d30 in bf16 with graphs, P = 1, 8, 32.
#
# Environment: OUT (default out-gpu, out-rehearsal for --no-gpu), PYTHON (the
# python3 with PyTorch, default python3), GPU_CHECK_BUILD (the build folder,
# default build-gpu, build-rehearsal for --no-gpu), GPU_CHECK_<PHASE>_S
# (a phase's limit in seconds, e.g. GPU_CHECK_BUILD_S=240).
# The phases are called by name (phase_NAME) and the unmounting from a trap:
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
self=$repo/scripts/gpu-check.sh

arg=${1:-}
case $arg in
  "" | bench | sizes) mode=${GPU_CHECK_MODE:-gpu} ;;
  --no-gpu) mode=no-gpu ;;
  --rehearse) mode=rehearse ;;
  --phase) mode=${GPU_CHECK_MODE:?} ;;
  *) echo "usage: scripts/gpu-check.sh [--rehearse | --no-gpu | bench | sizes]" >&2; exit 2 ;;
esac

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------- rehearsal --
# A clean Debian 12 root holding what the lent machine has and nothing more,
# the repository and the CUDA toolkit mounted into it; the checks run inside.
rehearsal_packages=(cmake ninja-build g++ python3 python3-torch)

mounted_under() {  # is anything mounted at or below $1?
  awk -v p="$1" '$2 == p || index($2, p "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts
}

apt_mirror() {  # the configured Debian mirror
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources | grep -v security | head -1)
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

rehearse() {
  if (($(nice) < 19)); then exec nice -n 19 "$self" --rehearse; fi
  local base=$repo/.rehearsal root=$repo/.rehearsal/root t0=$SECONDS
  if ! compgen -G ".deps/*.deb" >/dev/null || [[ ! -f .deps/peer/official_bench.py ]]; then
    echo "rehearse: .deps/ is empty: run scripts/fetch-gpu-deps.sh PEER_DIR first" >&2
    exit 1
  fi
  if mounted_under "$root"; then
    echo "rehearse: something is still mounted under $root (an earlier run was killed?): unmount it first" >&2
    exit 1
  fi
  if [[ ! -x $root/usr/bin/apt-get || -d $root/debootstrap ]]; then
    command -v debootstrap >/dev/null || as_root apt-get install -y --no-install-recommends debootstrap
    [[ -e $root ]] && as_root rm -rf --one-file-system "$root"
    mkdir -p "$base"
    echo "rehearse: debootstrap --variant=minbase bookworm $root $(apt_mirror)"
    as_root debootstrap --variant=minbase bookworm "$root" "$(apt_mirror)"
  fi

  local mounts=()
  cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
      as_root umount "${mounts[i]}" 2>/dev/null || as_root umount -l "${mounts[i]}" || true
    done
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  mount_into() {  # source target [ro]
    as_root mkdir -p "$root$2"
    as_root mount --bind "$1" "$root$2"
    mounts+=("$root$2")
    if [[ ${3:-} == ro ]]; then as_root mount -o remount,bind,ro "$root$2"; fi
  }
  mount_into /proc /proc
  mount_into /dev /dev
  mount_into /dev/pts /dev/pts

  local missing=() p
  for p in "${rehearsal_packages[@]}"; do
    as_root chroot "$root" dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]} > 0)); then
    echo "rehearse: installing into the root: ${missing[*]}"
    as_root cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    as_root chroot "$root" apt-get update -qq
    as_root chroot "$root" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    as_root chroot "$root" apt-get clean
  fi
  [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "rehearse: no /usr/local/cuda/bin/nvcc on this machine" >&2; exit 1; }
  mount_into /usr/local/cuda /usr/local/cuda ro
  mount_into "$repo" "$repo"
  echo "rehearse: root ready in $((SECONDS - t0))s; running the checks inside it (chroot)"

  local uid=${SUDO_UID:-$(id -u)} gid=${SUDO_GID:-$(id -g)} rc=0
  as_root chroot --userspec="$uid:$gid" "$root" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 \
    OUT="${OUT:-$repo/out-rehearsal}" GPU_CHECK_BUILD="${GPU_CHECK_BUILD:-build-rehearsal}" \
    GPU_CHECK_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
    GPU_CHECK_REHEARSAL="chroot into a debootstrap Debian 12 minbase root (${rehearsal_packages[*]})" \
    "$self" --no-gpu || rc=$?
  exit "$rc"
}

if [[ $mode == rehearse ]]; then rehearse; fi

# ------------------------------------------------------------------- config --
export GPU_CHECK_MODE=$mode
if [[ $mode == gpu ]]; then
  build=${GPU_CHECK_BUILD:-build-gpu}
  out=${OUT:-out-gpu}
else
  build=${GPU_CHECK_BUILD:-build-rehearsal}
  out=${OUT:-out-rehearsal}
fi
[[ $build == /* ]] || build=$repo/$build
[[ $out == /* ]] || out=$repo/$out
export GPU_CHECK_BUILD=$build OUT=$out
logs=$build/check
prefix=$build/deps
lib=$prefix/usr/lib/x86_64-linux-gnu
python=${PYTHON:-python3}
export PKG_CONFIG_LIBDIR=$lib/openblas-openmp/pkgconfig:$lib/pkgconfig:$prefix/usr/share/pkgconfig
rpath=$lib/openblas-openmp:$lib
peer_tarball=$repo/.deps/peer/var-official-78b9539.tar.gz
peer_runner=$repo/.deps/peer/official_bench.py

# Limits in seconds. On the GPU machine they add up to 470 s, under 8
# minutes; with each phase's 10 s grace before SIGKILL the command ends
# within 600 s (the device call's timeout_s) even if every phase hangs. The
# rehearsal's are generous: 2 cores.
budget() {  # phase
  local var
  var=GPU_CHECK_$(echo "${1//-/_}" | tr '[:lower:]' '[:upper:]')_S
  if [[ -n ${!var:-} ]]; then echo "${!var}"; return; fi
  if [[ $mode == gpu ]]; then
    case $1 in
      machine) echo 20 ;; unpack) echo 20 ;; configure) echo 45 ;; build) echo 150 ;;
      tests) echo 75 ;; bench) echo 90 ;; official) echo 70 ;; sweep) echo 420 ;;
    esac
  else
    case $1 in
      machine) echo 60 ;; unpack) echo 120 ;; configure) echo 300 ;; build) echo 3000 ;;
      tests) echo 2400 ;; bench) echo 60 ;; bench-cpu) echo 300 ;; official) echo 600 ;; sweep) echo 120 ;;
    esac
  fi
}

# ------------------------------------------------------------------- phases --
phase_machine() {
  echo "os: $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"'), $(uname -srm)"
  echo "cores: $(nproc)"
  echo "rehearsal: ${GPU_CHECK_REHEARSAL:-no}"
  local gpu
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null) ||
    gpu="none (no nvidia-smi, or it found no device)"
  echo "gpu: $gpu"
  echo "gcc: $(g++ --version | head -1)"
  echo "cmake: $(cmake --version | head -1)"
  echo "ninja: $(ninja --version 2>/dev/null || echo none)"
  local nvcc=nvcc
  command -v nvcc >/dev/null || nvcc=/usr/local/cuda/bin/nvcc
  echo "nvcc: $("$nvcc" --version 2>/dev/null | tail -1 || echo none)"
  echo "python: $(command -v "$python") $("$python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "commit: ${GPU_CHECK_COMMIT:-$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
}

# A .deb is an ar archive whose data.tar.* holds the files: dpkg -x, or
# Python where there is no dpkg.
unpack_deb() {  # deb dir
  if command -v dpkg-deb >/dev/null && [[ -z ${GPU_CHECK_NO_DPKG:-} ]]; then
    dpkg-deb -x "$1" "$2"
    return
  fi
  "$python" - "$1" "$2" <<'EOF'
import io, sys, tarfile
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'!<arch>\n', 'not an ar archive'
pos = 8
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip().rstrip('/'), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size & 1)
    if name.startswith('data.tar'):
        with tarfile.open(fileobj=io.BytesIO(body)) as t:  # gz, xz, bz2 (not zst)
            # Absolute links are fixed afterwards: extract them as they are.
            trusted = {'filter': 'fully_trusted'} if hasattr(tarfile, 'fully_trusted_filter') else {}
            t.extractall(sys.argv[2], **trusted)
        break
else:
    sys.exit('no data.tar in ' + sys.argv[1])
EOF
}

phase_unpack() {
  local deb n=0 name version
  [[ -f $repo/.deps/manifest.txt ]] || { echo "no .deps/manifest.txt: run scripts/fetch-gpu-deps.sh and carry .deps"; return 1; }
  while read -r name version; do
    compgen -G "$repo/.deps/${name}_${version/:/%3a}_*.deb" >/dev/null ||
      { echo "missing from .deps/: $name $version"; return 1; }
  done <"$repo/.deps/manifest.txt"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for deb in "$repo"/.deps/*.deb; do unpack_deb "$deb" "$prefix"; n=$((n + 1)); done
  # Some libraries (zlib, bzip2) live in /lib: merge it into /usr/lib, as a
  # merged-/usr system has it, and point absolute links into the prefix.
  if [[ -d $prefix/lib ]]; then
    cp -a "$prefix/lib/." "$prefix/usr/lib/"
    rm -rf "${prefix:?}/lib"
  fi
  local link target
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    [[ $target == /* ]] || continue
    [[ $target == /usr/* ]] || target=/usr$target
    ln -sfn "$prefix$target" "$link"
  done < <(find "$prefix" -type l -print0)
  # The .pc files name /usr (in variables and in -I/-L flags); point them at the prefix.
  grep -rl '/usr' "$prefix/usr" --include='*.pc' |
    xargs sed -i -E "s#(^[a-z_]+=|[[:space:]]-[IL])/usr(/|\$)#\1$prefix/usr\2#g"
  # The carried pkgconf, with its library; the machine's pkg-config if it will not run.
  mkdir -p "$prefix/bin"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$prefix/usr/bin/pkgconf" >"$prefix/bin/pkg-config"
  chmod +x "$prefix/bin/pkg-config"
  if ! "$prefix/bin/pkg-config" --version >/dev/null 2>&1; then
    echo "the carried pkgconf does not run here; using $(command -v pkg-config || echo 'no pkg-config')"
    rm -f "$prefix/bin/pkg-config"
  fi
  local dangling
  dangling=$(find "$prefix" -xtype l -not -path "$prefix/usr/share/doc/*")
  [[ -z $dangling ]] || { echo "links that point nowhere:"; echo "$dangling"; return 1; }
  echo "unpacked $n packages into $prefix"
  "$(pkg_config)" --modversion openblas libzip libpng zlib
}

pkg_config() {
  if [[ -x $prefix/bin/pkg-config ]]; then echo "$prefix/bin/pkg-config"; else command -v pkg-config || echo pkg-config; fi
}

phase_configure() {
  # The programs carry the prefix's library folders as DT_RPATH (searched for
  # their libraries' own dependencies too), so no LD_LIBRARY_PATH is needed
  # and nothing else run here sees the carried libraries.
  rm -f "$build/CMakeCache.txt"
  local extra=()
  # CMake 3.25.1's FindCUDAToolkit (Debian 12's) sets a property on
  # CUDA::nvToolsExt without checking that the target exists, and CUDA 13
  # has no libnvToolsExt: configuring fails. Name a library of the toolkit
  # for it (the project never links CUDA::nvToolsExt).
  local cuda module
  cuda=$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")
  # shellcheck disable=SC2016  # (CMake expands it)
  echo 'message("${CMAKE_ROOT}")' >"$build/cmake-root.cmake"
  module=$(cmake -P "$build/cmake-root.cmake" 2>&1)/Modules/FindCUDAToolkit.cmake
  if [[ -f $module ]] && grep -q 'set_property(TARGET CUDA::nvToolsExt PROPERTY DEPRECATION' "$module" &&
    ! grep -B1 'set_property(TARGET CUDA::nvToolsExt PROPERTY DEPRECATION' "$module" | grep -q 'if(TARGET CUDA::nvToolsExt' &&
    ! compgen -G "$cuda/lib64/libnvToolsExt*" >/dev/null; then
    echo "gpu-check: $module needs CUDA::nvToolsExt, which CUDA here lacks: naming $cuda/lib64/libcudart.so for it"
    extra+=(-DCUDA_nvToolsExt_LIBRARY="$cuda/lib64/libcudart.so")
  fi
  # Headers of the multiarch folder (OpenSSL's opensslconf.h, which
  # cpp-httplib's and libcrypto's headers include) are on the compiler's
  # default path only under /usr: name the prefix's.
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVARPS_CUDA=ON -DVARPS_BUILD_TESTS=ON \
    -DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_INCLUDE_PATH="$prefix/usr/include" -DCMAKE_LIBRARY_PATH="$lib" \
    -DPKG_CONFIG_EXECUTABLE="$(pkg_config)" \
    -DCMAKE_CXX_FLAGS="-isystem $prefix/usr/include/x86_64-linux-gnu" \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$rpath -Wl,-rpath-link,$rpath" "${extra[@]}"
}

# Where each library of a program comes from: the carried packages, the
# machine's C library and compiler runtime, CUDA, or elsewhere (reported).
library_report() {  # program
  local name path kind
  ldd "$1" | while read -r name _ path _; do
    case $name in linux-vdso.so.* | /*) continue ;; esac
    if [[ $path == "not" ]]; then kind=missing
    elif [[ $path == "$prefix"/* ]]; then kind=carried
    elif [[ $path == */cuda* || $name == libcuda.so* || $name == libcublas* || $name == libcudart* ]]; then kind=cuda
    else
      case $name in
        libc.so.* | libm.so.* | libmvec.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libstdc++.so.* | \
          libgcc_s.so.* | libgomp.so.*) kind=system ;;
        *) kind=other ;;
      esac
    fi
    echo "$(basename "$1") $kind $name ${path/not/not found}"
  done
}

phase_build() {
  rm -f "$build/varps" "$build/tests/varps_tests"
  local rc=0
  cmake --build "$build" --target varps_cli varps_tests --parallel "$(nproc)" -- -k 0 || rc=$?
  local prog
  for prog in "$build/varps" "$build/tests/varps_tests"; do
    [[ -x $prog ]] && library_report "$prog"
  done >"$logs/libraries.txt"
  cat "$logs/libraries.txt"
  return "$rc"
}

phase_tests() {
  local bin=$build/tests/varps_tests filter='*Cuda*' cap=30
  [[ $mode == gpu ]] || { filter='*'; cap=900; }
  [[ -x $bin ]] || { echo "no $bin: the build failed"; return 99; }
  mkdir -p "$logs/tests"
  local suites suite rc failed=0 left
  suites=$("$bin" --gtest_list_tests --gtest_filter="$filter" | sed -n 's/^\([^ ][^ ]*\)\.$/\1/p')
  # One process per test suite, each with its own limit within the phase's:
  # a crash or a hang costs that suite only.
  for suite in $suites; do
    left=$((GPU_CHECK_DEADLINE - $(date +%s) - 3))
    if ((left < 5)); then
      echo "$suite not-run" >>"$logs/tests/status.txt"
      failed=1
      continue
    fi
    rc=0
    timeout -k 5 "$((left < cap ? left : cap))" "$bin" --gtest_filter="$suite.*" --gtest_color=no \
      >"$logs/tests/${suite//\//_}.log" 2>&1 || rc=$?
    echo "$suite $rc" >>"$logs/tests/status.txt"
    ((rc == 0)) || { echo "$suite: exit $rc"; failed=1; }
  done
  echo "$(wc -l <"$logs/tests/status.txt") suites run, one process each"
  grep -h '^\[ bf16' "$logs"/tests/*.log || true
  return "$failed"
}

peak_flags() {  # the H200's measured ceilings (docs/cuda.md), when the GPU is one
  if nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -q H200; then
    echo "--peak-tflops 790 --peak-gbps 4300"
  fi
}

run_bench() {  # out-name device precision graphs preset streams warmup repeats
  local extra=()
  [[ $2 == cuda ]] && read -r -a extra <<<"$(peak_flags)"
  "$build/varps" bench --device "$2" --precision "$3" --cuda-graphs "$4" --preset "$5" --streams "$6" \
    --schedule batched --warmup "$7" --repeats "$8" "${extra[@]}" --out "$logs/$1" --quiet
}

phase_bench() {
  [[ -x $build/varps ]] || { echo "no $build/varps: the build failed"; return 99; }
  if [[ $mode == gpu ]]; then
    run_bench bench-d16 cuda bf16 on d16 1,8,64 2 10
    return
  fi
  # No GPU here: the CUDA bench must fail at once, saying why.
  local rc=0
  run_bench bench-d16 cuda bf16 on d16 1,8,64 2 10 || rc=$?
  if ((rc == 0)); then echo "varps bench --device cuda succeeded on a machine without a GPU"; return 1; fi
  echo "varps bench --device cuda: exit $rc without a GPU, as expected"
}

phase_bench_cpu() {  # the rehearsal only: a tiny CPU bench, so the table reads a real bench.json
  [[ -x $build/varps ]] || { echo "no $build/varps: the build failed"; return 99; }
  run_bench bench-cpu cpu fp32 on tiny 1,8 1 3
}

phase_official() {
  [[ -f $peer_tarball && -f $peer_runner ]] ||
    { echo "no $peer_tarball or $peer_runner: run scripts/fetch-gpu-deps.sh and carry .deps"; return 1; }
  rm -rf "$build/peer"
  mkdir -p "$build/peer"
  tar -xzf "$peer_tarball" -C "$build/peer"
  # shellcheck disable=SC2054  # (a comma list is one argument)
  local args=(--device cuda --dtype fp16 --batch 1,8,64 --repeats 10 --warmup 1)
  [[ $mode == gpu ]] || args=(--device cpu --batch 1 --repeats 1 --warmup 0 --depth 4 --threads 2)
  PYTHONUNBUFFERED=1 "$python" "$peer_runner" --official "$build/peer/var-official" "${args[@]}" |
    tee "$logs/official.jsonl"
}

phase_sweep() {
  [[ -x $build/varps ]] || { echo "no $build/varps: the build failed"; return 99; }
  local run preset failed=0
  if [[ $GPU_CHECK_SWEEP == bench ]]; then
    for run in bf16:on fp32:on bf16:off; do
      run_bench "bench-d16-${run%:*}-graphs-${run#*:}" cuda "${run%:*}" "${run#*:}" d16 1,2,4,8,16,32,64 2 20 |
        tail -24 || failed=1
    done
  else
    for preset in d20 d24 d30; do
      run_bench "bench-$preset-bf16-graphs-on" cuda bf16 on "$preset" 1,8,32 2 10 | tail -24 || failed=1
    done
  fi
  return "$failed"
}

if [[ $arg == --phase ]]; then
  # shellcheck disable=SC2154  # (set by the caller)
  "phase_${2//-/_}"
  exit
fi

# -------------------------------------------------------------------- main --
rm -rf "$logs"
mkdir -p "$logs" "$out"
: >"$logs/phases.txt"
declare -A status

run_phase() {  # name [needs...]
  local name=$1 need
  shift
  local budget t0=$SECONDS rc=0 st
  budget=$(budget "$name")
  for need in "$@"; do
    if [[ ${status[$need]:-} != ok ]]; then
      status[$name]=skipped
      echo "$name skipped 0 $budget needs-$need" >>"$logs/phases.txt"
      echo "gpu-check: $name skipped ($need: ${status[$need]:-not run})"
      return
    fi
  done
  echo "gpu-check: $name (limit ${budget}s) ..."
  GPU_CHECK_DEADLINE=$(($(date +%s) + budget)) timeout -k 10 "$budget" "$self" --phase "$name" \
    >"$logs/$name.log" 2>&1 || rc=$?
  if ((rc == 124 || rc == 137)); then st=timeout; elif ((rc == 99)); then st=skipped; elif ((rc != 0)); then st=failed; else st=ok; fi
  status[$name]=$st
  echo "$name $st $((SECONDS - t0)) $budget exit-$rc" >>"$logs/phases.txt"
  echo "gpu-check: $name $st in $((SECONDS - t0))s"
  [[ $st == ok ]] || tail -n 8 "$logs/$name.log" | sed 's/^/    | /'
}
export GPU_CHECK_REHEARSAL=${GPU_CHECK_REHEARSAL:-} GPU_CHECK_SWEEP=$arg

t_start=$SECONDS
run_phase machine
run_phase unpack
run_phase configure unpack
run_phase build configure
case $arg in
  bench | sizes) run_phase sweep build ;;
  *)
    run_phase tests
    run_phase bench
    [[ $mode == gpu ]] || run_phase bench-cpu
    run_phase official
    ;;
esac
echo "total $((SECONDS - t_start))" >>"$logs/phases.txt"

"$python" "$repo/scripts/gpu_check_table.py" "$logs" >"$logs/table.txt" 2>&1 ||
  echo "(the table script failed: see below)" >>"$logs/table.txt"
cp "$logs/table.txt" "$out/gpu-check-table.txt"
tar -czf "$out/gpu-check-logs.tar.gz" -C "$build" "$(basename "$logs")"
echo "gpu-check: logs in $out/gpu-check-logs.tar.gz ($(du -h "$out/gpu-check-logs.tar.gz" | cut -f1)), the table in $out/gpu-check-table.txt"
[[ $arg != bench && $arg != sizes ]] || cat "$logs/sweep.log"
echo
cat "$logs/table.txt"
bad=0
for name in "${!status[@]}"; do [[ ${status[$name]} == ok ]] || bad=1; done
exit "$bad"
