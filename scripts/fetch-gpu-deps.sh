#!/usr/bin/env bash
# Fetch into the git-ignored .deps/ everything scripts/gpu-check.sh needs on
# a lent GPU machine, which has a compiler, CMake, ninja, CUDA and a PyTorch
# but none of Debian's -dev packages and no network:
#   - the .deb files of the build's -dev packages and of every library they
#     need, resolved by apt as on a machine with nothing installed, less the C
#     library and the compiler's own runtime (the machine's compiler brings
#     those; an older copy on the library path would shadow the newer one);
#   - .deps/manifest.txt, one "package version" a line;
#   - the official VAR's tarball and its timing runner, copied from PEER_DIR
#     into .deps/peer/ (only the working tree and carried paths travel to the
#     device).
#
#   usage: scripts/fetch-gpu-deps.sh PEER_DIR
#     PEER_DIR: the folder with var-official-78b9539.tar.gz and official_bench.py
#
# Run it on Debian 12 (bookworm), as root or as a user with sudo (for
# apt-get update). Stale .deb files in .deps/ are removed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PEER_DIR (the folder with var-official-78b9539.tar.gz and official_bench.py)" >&2
  exit 2
fi
peer_src=$1
dest=.deps

# What the build reads (README.md's setup command, less the toolchain).
packages=(libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev libzip-dev libpng-dev zlib1g-dev libssl-dev libcpp-httplib-dev
          libgtest-dev libbenchmark-dev pkg-config)
# Provided by the machine's C library and compiler; never carried.
host_provided=(libc6 libc6-dev libc-dev-bin linux-libc-dev libcrypt1 libcrypt-dev libnsl2 libnsl-dev
               libtirpc3 libtirpc-dev libtirpc-common rpcsvc-proto libkrb5-3 libkrb5support0 libk5crypto3
               libgssapi-krb5-2 libcom-err2 libkeyutils1 gcc-12-base libgcc-s1 libstdc++6 libgomp1)

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release)
[[ $codename == bookworm ]] ||
  echo "fetch-gpu-deps: warning: this is '${codename:-unknown}', not Debian 12 (bookworm)" >&2
for f in official_bench.py var-official-78b9539.tar.gz; do
  [[ -r $peer_src/$f ]] || { echo "fetch-gpu-deps: $peer_src/$f not found (usage: $0 PEER_DIR)" >&2; exit 1; }
done

as_root apt-get update -qq

# Resolve against an empty package state, so that what this machine happens
# to have installed does not hide a dependency.
empty=$(mktemp)
trap 'rm -f "$empty"' EXIT
mapfile -t resolved < <(apt-get -s -o Dir::State::status="$empty" install --no-install-recommends "${packages[@]}" |
                          sed -nE 's/^Inst ([^ ]+) \(([^ ]+) .*/\1 \2/p')
((${#resolved[@]} > 0)) || { echo "fetch-gpu-deps: apt resolved nothing" >&2; exit 1; }

wanted=()
for line in "${resolved[@]}"; do
  name=${line% *}
  skip=0
  for h in "${host_provided[@]}"; do [[ $name == "$h" ]] && skip=1; done
  ((skip)) || wanted+=("$line")
done

mkdir -p "$dest/peer"
printf '%s\n' "${wanted[@]}" | sort >"$dest/manifest.txt"
# apt-get download names a file NAME_VERSION_ARCH.deb, the version's epoch
# colon written %3a.
keep=()
fetch=()
for line in "${wanted[@]}"; do
  name=${line% *} version=${line#* }
  matches=("$dest/${name}_${version/:/%3a}_"*.deb)
  if [[ -e ${matches[0]} ]]; then keep+=("${matches[0]}"); else fetch+=("$name=$version"); fi
done
if ((${#fetch[@]} > 0)); then
  sandbox=()  # as root, download as root (apt's _apt user may not reach .deps)
  [[ $(id -u) -ne 0 ]] || sandbox=(-o APT::Sandbox::User=root)
  (cd "$dest" && apt-get "${sandbox[@]}" download "${fetch[@]}")
fi
for line in "${wanted[@]}"; do
  name=${line% *} version=${line#* }
  matches=("$dest/${name}_${version/:/%3a}_"*.deb)
  [[ -e ${matches[0]} ]] || { echo "fetch-gpu-deps: $name $version was not downloaded" >&2; exit 1; }
  keep+=("${matches[0]}")
done
for deb in "$dest"/*.deb; do
  stale=1
  for k in "${keep[@]}"; do [[ $deb == "$k" ]] && stale=0; done
  if ((stale)); then echo "fetch-gpu-deps: removing stale $deb"; rm -f "$deb"; fi
done

install -m 0644 "$peer_src/official_bench.py" "$peer_src/var-official-78b9539.tar.gz" "$dest/peer/"

echo "fetch-gpu-deps: ${#wanted[@]} packages in $dest/ ($(du -sh "$dest" | cut -f1) with the peer):"
sed 's/^/  /' "$dest/manifest.txt"
