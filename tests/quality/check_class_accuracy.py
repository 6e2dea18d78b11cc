#!/usr/bin/env python3
"""Generated images of the built-in trained model are classified as the class
they were generated for, at the rate the model measurably reaches.

Runs `varps sample` on the default model (every class, --per-class seeds each)
and classifies the images with the built-in classifier (scripts/quality.py).
Fails when the overall rate, or any one class's, falls below its bound. As a
check that the measure can fail, the same seeds drawn with the logits
flattened (temperature 50: a broken sampler or guidance) must fall below the
overall bound.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import quality  # noqa: E402


def accuracy(varps, out, per_class, flags):
    subprocess.run([varps, "sample", "--out", out, "--per-class", str(per_class), "--seed", "0", "-q",
                    "--threads", "2"] + flags, check=True)
    data = np.load(os.path.join(out, "samples.npz"))
    clf = quality.Classifier(ROOT / "models" / "fmnist" / "classifier.safetensors")
    _, logits = clf.features_and_logits(quality.grey_of_rgb(data["arr_0"]))
    hits = logits.argmax(1) == data["arr_1"]
    per_class = {c: float(hits[data["arr_1"] == c].mean()) for c in range(10)}
    return float(hits.mean()), per_class


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--varps", required=True)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--min-accuracy", type=float, required=True)
    ap.add_argument("--min-class-accuracy", type=float, required=True)
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        acc, per_class = accuracy(args.varps, os.path.join(tmp, "exact"), args.per_class, [])
        print(f"default sampling: {100 * acc:.1f} % of {10 * args.per_class} images classified as their class "
              f"(bound {100 * args.min_accuracy:.0f} %); per class: "
              + ", ".join(f"{c}: {100 * a:.0f} %" for c, a in per_class.items()))
        if acc < args.min_accuracy:
            print("FAIL: overall rate below its bound")
            failed = True
        for c, a in per_class.items():
            if a < args.min_class_accuracy:
                print(f"FAIL: class {c} at {100 * a:.0f} %, below {100 * args.min_class_accuracy:.0f} %")
                failed = True
        broken, _ = accuracy(args.varps, os.path.join(tmp, "flat"), args.per_class, ["--temperature", "50"])
        print(f"flattened logits (temperature 50): {100 * broken:.1f} %")
        if broken >= args.min_accuracy:
            print("FAIL: the measure does not fall for a broken sampler; the bound is too low to mean anything")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
