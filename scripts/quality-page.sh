#!/usr/bin/env bash
# docs/quality.md: the quality of the built-in Fashion-MNIST model's images,
# measured by scripts/quality.py (class accuracy, FD-FMNIST, diversity) for
# the default sampling settings and beside them the settings and precisions
# worth comparing, with a grid of images per setting (docs/quality/NAME.png).
#
# usage: scripts/quality-page.sh        (VARPS=build/varps, PER_CLASS=100)
# Needs Debian's dataset-fashion-mnist and python3-numpy; about two minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
varps=${VARPS:-build/varps}
per_class=${PER_CLASS:-100}
# Debian's python3 has python3-numpy; a python3 earlier on PATH may not.
python=${PYTHON:-$([[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || echo python3)}
out=docs/quality
mkdir -p "$out"
rm -f "$out"/*.png
"$python" scripts/quality.py --varps "$varps" --per-class "$per_class" --json "$out/quality.json" \
  --grid "$out/NAME.png" \
  --setting "default=" \
  --setting "cfg0=--cfg 0" \
  --setting "cfg4=--cfg 4" \
  --setting "d4=--var models/fmnist/var_d4.pth --vae models/fmnist/vae.pth" \
  --setting "bf16=--precision bf16" \
  --setting "int8=--precision int8" > "$out/table.md.tmp"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  cat <<'TEXT'
# Quality of the built-in model's images

`varps` ships a small VAR trained on Fashion-MNIST (`models/fmnist/`, trained
by `training/train.py` with the official VAR classes): the default model of
every command. With it, quality can be measured, and so can what an
approximation (a precision, a sampling setting, a smaller model) costs in
quality. The measures, all from `scripts/quality.py` and the classifier
shipped beside the model:

- **class accuracy**: the share of generated images that the classifier
  assigns to the class they were generated for;
- **FD-FMNIST**: the Fréchet distance between the classifier's 128
  penultimate features of the generated images and of the 10,000 test images.
  **It is not FID**: another network, another data set, other statistics;
  compare it only with itself. As a floor, 10,000 real training images score
  the distance given under the table;
- **diversity**: the mean pairwise feature distance between images of one
  class (the test split's own, for as many images, in brackets), and the
  share of distinct images within a class (equal token maps give equal
  images, so this bounds the share of distinct token maps from below);
- **PSNR** of the tokenizer's reconstructions of the test split (encode to
  token maps, decode), measured by the trainer.

Every setting samples the same seeds (`--seed 0`, image i gets seed i,
class-major), `--per-class` images of each of the 10 classes. The default
sampling is the FID protocol's (`varps sample`: cfg 1.5, top-k 900, top-p
0.96).

TEXT
  echo "Made by \`scripts/quality-page.sh\` (PER_CLASS=$per_class) at commit $commit on: $cpu."
  echo
  cat "$out/table.md.tmp"
  echo
  cat <<'TEXT'
How to read it: the classifier itself is right on about 91 % of the real
test images, so class accuracy near that is this measure's ceiling; its
confusions (shirt, coat and pullover) are the classifier's as much as the
model's. Guidance trades diversity for class fidelity, as it does on
ImageNet: cfg 0 gives the most varied and least class-true images, cfg 4 the
reverse. The rows `d4`, `bf16` and `int8` are the smaller model and the
reduced CPU precisions on the same seeds: an approximation costs what its row
differs from `default`.
TEXT
  echo
  echo "Images, one row per class (0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,"
  echo "7 sneaker, 8 bag, 9 ankle boot), the first ten seeds of each:"
  echo
  for f in "$out"/*.png; do
    name=$(basename "$f" .png)
    echo "- \`$name\`: ![$name](quality/$name.png)"
  done
} > docs/quality.md
rm "$out/table.md.tmp"
echo "wrote docs/quality.md"
