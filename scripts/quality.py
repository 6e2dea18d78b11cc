#!/usr/bin/env python3
"""Quality of generated Fashion-MNIST images, measured with the built-in classifier.

usage: scripts/quality.py [--varps build/varps] [--per-class 100] [--seed 0]
                          [--setting NAME=FLAGS ...] [--samples FILE.npz] [--json FILE]
                          [--model-dir models/fmnist] [--data DIR]

For each --setting it runs `varps sample` on the built-in model (every class, --per-class images
each, seeds --seed + i, the same for every setting) with that setting's flags (a sampling setting,
--precision, --var/--vae), then measures the set and prints one markdown table. Figures:

  class accuracy   share of images the classifier assigns to the class they were generated for
  FD-FMNIST        Frechet distance between the classifier's 128 penultimate features of the
                   generated images and of the 10,000 test images. It is NOT FID: another
                   network, another data set, other feature statistics; compare it only with
                   itself. The test split's own training-split distance is printed as a floor.
  diversity        mean pairwise feature distance within a class (mean over classes), beside
                   the test split's; and the share of distinct images within a class (distinct
                   images imply distinct token maps; equal token maps give equal images)
  PSNR             the tokenizer's reconstruction of the 10,000 test images (encode to token maps,
                   decode), measured by the trainer with the official code (manifest.json)

Needs only numpy. The classifier runs from classifier.safetensors (written by training/train.py).
"""
import argparse
import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))
import fmnist_data  # noqa: E402  (the data set's reader; numpy only)


def conv3x3_relu(x, w, b):
    """x [N, C, H, W], w [O, C, 3, 3], zero padding 1, then ReLU."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, h, wd, c, 3, 3), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            cols[..., dy, dx] = xp[:, :, dy:dy + h, dx:dx + wd].transpose(0, 2, 3, 1)
    y = cols.reshape(n * h * wd, c * 9) @ w.reshape(w.shape[0], -1).T + b
    return np.maximum(y, 0).reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def read_safetensors(path):
    """The float32 tensors of a safetensors file, and its metadata."""
    raw = pathlib.Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {h['dtype']}, expected F32")
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(h["shape"])
    return out, header.get("__metadata__", {})


class Classifier:
    """The small CNN of training/train_classifier.py, forward only."""

    def __init__(self, path):
        self.p, meta = read_safetensors(path)
        try:  # the input standardisation it was trained with (training/export.py)
            self.mean, self.std = float(meta["input_mean"]), float(meta["input_std"])
        except (KeyError, ValueError):
            raise SystemExit(f"{path}: no numeric 'input_mean' and 'input_std' in the metadata; not the garment "
                             "classifier training/export.py writes")

    def features_and_logits(self, grey01, batch=500):
        feats, logits = [], []
        p = self.p
        for i in range(0, len(grey01), batch):
            x = ((grey01[i:i + batch] - self.mean) / self.std).astype(np.float32)[:, None]
            x = maxpool2(conv3x3_relu(x, p["conv1.weight"], p["conv1.bias"]))
            x = maxpool2(conv3x3_relu(x, p["conv2.weight"], p["conv2.bias"]))
            x = maxpool2(conv3x3_relu(x, p["conv3.weight"], p["conv3.bias"]))
            f = np.maximum(x.reshape(len(x), -1) @ p["fc1.weight"].T + p["fc1.bias"], 0)
            feats.append(f)
            logits.append(f @ p["fc2.weight"].T + p["fc2.bias"])
        return np.concatenate(feats), np.concatenate(logits)


def grey_of_rgb(images_u8_hw3):
    if images_u8_hw3.shape[1:3] != (32, 32):
        raise SystemExit(f"images are {images_u8_hw3.shape[1]}x{images_u8_hw3.shape[2]}, the classifier "
                         "expects the built-in model's 32x32")
    return images_u8_hw3.astype(np.float32).mean(axis=3) / 255.0


def frechet_distance(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    e, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(e, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def mean_pairwise_distance(f):
    sq = (f * f).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0, None)
    n = len(f)
    return float(np.sqrt(d2)[np.triu_indices(n, 1)].mean())


def measure(images, labels, clf, test_feats, test_labels):
    feats, logits = clf.features_and_logits(grey_of_rgb(images))
    pred = logits.argmax(1)
    classes = sorted(set(labels.tolist()))
    per_class = {int(c): float((pred[labels == c] == c).mean()) for c in classes}
    div = [mean_pairwise_distance(feats[labels == c]) for c in classes]
    ref_div = [mean_pairwise_distance(test_feats[test_labels == c][:len(feats[labels == c])]) for c in classes]
    distinct = [len({images[i].tobytes() for i in np.nonzero(labels == c)[0]}) / int((labels == c).sum())
                for c in classes]
    return {
        "images": int(len(images)),
        "class_accuracy": float((pred == labels).mean()),
        "class_accuracy_per_class": per_class,
        "fd_fmnist": frechet_distance(feats, test_feats),
        "diversity_feature_distance": float(np.mean(div)),
        "diversity_feature_distance_test_split": float(np.mean(ref_div)),
        "distinct_images_share": float(np.mean(distinct)),
    }


def write_png(path, rgb):
    """uint8 [H, W, 3] as an 8-bit RGB PNG (zlib and struct only)."""
    import zlib
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(png)


def image_grid(images, labels, per_class, scale=2):
    """The first `per_class` images of each class, one row per class."""
    rows = []
    for c in sorted(set(labels.tolist())):
        picks = images[labels == c][:per_class]
        rows.append(np.concatenate(list(picks), axis=1))
    grid = np.concatenate(rows, axis=0)
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def run_sample(varps, out, per_class, seed, flags):
    cmd = [varps, "sample", "--out", out, "--per-class", str(per_class), "--seed", str(seed), "-q"] + flags
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return os.path.join(out, "samples.npz")


TABLE_HEAD = ("| setting | `varps sample` flags | images | class accuracy | FD-FMNIST | diversity (test split) "
              "| distinct images |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")


def table_row(name, f):
    return (f"| {name} | `{f['sample_flags'] or '(defaults)'}` | {f['images']} | {100 * f['class_accuracy']:.1f} % "
            f"| {f['fd_fmnist']:.2f} | {f['diversity_feature_distance']:.2f} "
            f"({f['diversity_feature_distance_test_split']:.2f}) | {100 * f['distinct_images_share']:.1f} % |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--varps", default=str(ROOT / "build" / "varps"))
    ap.add_argument("--model-dir", default=str(ROOT / "models" / "fmnist"))
    ap.add_argument("--data", default=fmnist_data.DEFAULT_ROOT)
    ap.add_argument("--samples", help="measure this samples.npz instead of sampling")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=FLAGS",
                    help="a named setting: the flags given to varps sample (repeat; default: one, 'default', "
                         "with no flags)")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every setting's figures here")
    ap.add_argument("--grid", help="write a PNG of each setting's first 10 images per class (one row per class); "
                                   "NAME in the path is replaced by the setting's name")
    args = ap.parse_args()
    if args.per_class <= 0:
        ap.error("--per-class must be > 0")
    settings = []
    for text in args.setting or ["default="]:
        name, sep, flags = text.partition("=")
        if not sep or not name:
            ap.error(f"--setting '{text}': expected NAME=FLAGS")
        settings.append((name, flags.split()))
    model = pathlib.Path(args.model_dir)
    clf = Classifier(model / "classifier.safetensors")
    test_imgs, test_labels = fmnist_data.load_split(args.data, "test")
    train_imgs, _ = fmnist_data.load_split(args.data, "train")
    test_feats, test_logits = clf.features_and_logits(fmnist_data.padded_grey01(test_imgs))
    train_feats, _ = clf.features_and_logits(fmnist_data.padded_grey01(train_imgs[:10000]))
    reference = {"classifier_test_accuracy": float((test_logits.argmax(1) == test_labels).mean()),
                 "fd_fmnist_train_vs_test": frechet_distance(train_feats, test_feats)}
    manifest = model / "manifest.json"
    if manifest.exists():
        reference["tokenizer_test_psnr_db"] = json.loads(manifest.read_text())["tokenizer"]["test_reconstruction_psnr_db"]
    results = {}
    for name, flags in settings:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.samples or run_sample(args.varps, os.path.join(tmp, "job"), args.per_class, args.seed, flags)
            data = np.load(path)
            f = measure(data["arr_0"], data["arr_1"], clf, test_feats, test_labels)
            if args.grid:
                write_png(args.grid.replace("NAME", name), image_grid(data["arr_0"], data["arr_1"], 10))
        f["sample_flags"] = " ".join(flags)
        results[name] = f
        print(f"{name}: class accuracy {100 * f['class_accuracy']:.1f} %, FD-FMNIST {f['fd_fmnist']:.2f}",
              file=sys.stderr, flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"reference": reference, "settings": results}, indent=1) + "\n")
    print(TABLE_HEAD)
    for name, f in results.items():
        print(table_row(name, f))
    print()
    print(f"classifier test accuracy {100 * reference['classifier_test_accuracy']:.2f} %; FD-FMNIST of 10,000 "
          f"training images against the test split {reference['fd_fmnist_train_vs_test']:.2f}"
          + (f"; tokenizer reconstruction PSNR {reference['tokenizer_test_psnr_db']:.2f} dB (test split)"
             if "tokenizer_test_psnr_db" in reference else ""))


if __name__ == "__main__":
    main()
