#!/usr/bin/env bash
# The installed package, used from outside the tree: installs a build into
# a temporary prefix, checks the installed headers (each compiles on its
# own, none names a header that is not installed) and that libvarps.a holds
# nothing of the benchmark library, builds examples/consumer against the
# prefix with find_package(varps), and checks that its image is the
# installed varps program's for the same class and seed.
#
#   scripts/check-consumer.sh [BUILD_DIR]    (default: build, after `cmake --build`)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

fail() {
  echo "check-consumer: $*" >&2
  exit 1
}
# Runs a step quietly, showing its output when it fails.
quiet() {
  local log=$work/step.log
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "failed: $*"
  fi
}

quiet cmake --install "$build" --prefix "$prefix"
include=$prefix/include
lib=$(find "$prefix" -name libvarps.a | head -n 1)
bench_lib=$(find "$prefix" -name libvarps_bench.a | head -n 1)
[[ -n $lib && -n $bench_lib ]] || fail "libvarps.a or libvarps_bench.a was not installed under $prefix"
[[ -f $include/varps/pipeline.hpp ]] || fail "include/varps/pipeline.hpp was not installed"
[[ -x $prefix/bin/varps ]] || fail "bin/varps was not installed"

# Headers: only installed ones included, and each one complete by itself.
cxx=${CXX:-c++}
headers=0
for h in "$include"/varps/*.hpp; do
  while read -r inc; do
    [[ -f $include/$inc ]] || fail "$(basename "$h") includes \"$inc\", which is not installed"
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$h")
  echo "#include \"varps/$(basename "$h")\"" | quiet "$cxx" -std=c++20 -fsyntax-only -I"$include" -x c++ -
  headers=$((headers + 1))
done

# The engine without the benchmark: no varps::bench symbol, defined or
# needed, in libvarps.a (and the pattern does find them in libvarps_bench.a).
nm -C "$bench_lib" >"$work/bench-lib.nm"
nm -C "$lib" >"$work/lib.nm"
grep -q 'varps::bench::' "$work/bench-lib.nm" ||
  fail "no varps::bench symbols in $bench_lib: the check below would prove nothing"
if grep 'varps::bench::' "$work/lib.nm" >"$work/bench-symbols"; then
  head -n 5 "$work/bench-symbols" >&2
  fail "libvarps.a has benchmark symbols ($(wc -l <"$work/bench-symbols") lines)"
fi

generator=()
if command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
quiet cmake -S examples/consumer -B "$work/consumer" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release
quiet cmake --build "$work/consumer"

class=3 seed=7
quiet "$prefix/bin/varps" generate --preset tiny --class "$class" --seed "$seed" --out "$work/cli" --quiet
"$work/consumer/app" "$class" "$seed" "$work/app.png" "$work/cli/000000.png" ||
  fail "the consumer failed, or its image is not varps generate's"
echo "check-consumer: ok ($headers headers, the consumer built with find_package(varps) and linked varps::varps alone)"
