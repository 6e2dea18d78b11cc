#!/usr/bin/env bash
# The error of each reduced CPU precision against fp32, as docs/tolerances.md
# gives it: `varps precision-error` on d16 random weights, 8 images, with the
# default sampling (cfg 4, top-k 900, top-p 0.95) and greedy (top-k 1), for
# bf16 and int8. Each run holds two d16 models (about 3 GiB) and takes a
# minute or two on 2 cores; nothing else should run beside it. It prints the
# table of docs/tolerances.md (scripts/precision-summary.py), then each run's
# report.
#
#   scripts/precision-tables.sh [OUT]     # OUT defaults to docs/precision-cpu
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
varps=${VARPS:-build/varps}
out=${1:-docs/precision-cpu}
[[ -x $varps ]] || { echo "precision-tables: $varps not built" >&2; exit 1; }
mkdir -p "$out"
for precision in bf16 int8; do
  for sampling in default greedy; do
    flags=()
    [[ $sampling == greedy ]] && flags=(--top-k 1 --top-p 0)
    dir="$out/d16-$precision-$sampling"
    echo "== d16, $precision, $sampling sampling" >&2
    "$varps" precision-error --preset d16 --precision "$precision" --images 8 --threads 2 "${flags[@]}" \
      --out "$dir" -q
  done
done
# The table docs/tolerances.md gives, then each run's own report.
python3 scripts/precision-summary.py "$out"
echo
for f in "$out"/*/precision-error.md; do
  echo "### ${f#"$out"/}"
  echo
  cat "$f"
  echo
done
