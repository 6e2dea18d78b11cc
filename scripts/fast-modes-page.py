#!/usr/bin/env python3
"""docs/fast-modes.md: what each fast mode saves on real sizes and costs on the trained model.

usage: scripts/fast-modes-page.py --official DIR --runner FILE --python PY
                                  [--varps build/varps] [--depths 16,30] [--rounds 2] [--repeats 2]
                                  [--threads 2] [--per-class 100] [--only quality|speed|page]

Speed: random weights of the released d16 and d30 sizes, one image (cfg 4, top-k 900, top-p 0.95),
tokens to pixels, timed as scripts/compare-official.py times: each side is one process
(`varps bench --warmup 1 --repeats R`, or the official code on the given PyTorch through the peer
runner), the sides run interleaved in --rounds rounds with the order rotating, and each side's
figure is the median of all its samples (min-max beside it). Ratios are the exact path's (or the
official code's) median over the mode's.

Quality: the built-in Fashion-MNIST model (depth 8, 4 scales) with the same seeds for every setting
(--per-class images of each class, `varps sample`'s defaults: cfg 1.5, top-k 900, top-p 0.96),
measured by scripts/quality.py (class accuracy, FD-FMNIST, diversity), plus the share of tokens at
each scale equal to the exact path's (`varps generate --tokens-out` on the same seeds). The refiner
of the trained model is its depth-4 sibling (fmnist-d4); at d16 there is no smaller released model,
so the refiner rows are d30's only.

A mode is given once per model: its flags differ because the models have 4 and 10 scales, and
each row names the share of the tokens it touches on each. Writes docs/fast-modes.md,
docs/fast-modes/fast-modes.json and one image grid per setting (docs/fast-modes/NAME.png).
--only quality or speed measures one half again and keeps the other from fast-modes.json; --only page
writes the page from fast-modes.json alone.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "fast-modes"


sys.path.insert(0, str(ROOT / "scripts"))
compare = importlib.import_module("compare-official")  # the timing helpers

FMNIST_TOKENS = [1, 4, 9, 16]
RELEASED_TOKENS = [1, 4, 9, 16, 25, 36, 64, 100, 169, 256]

# name, what it does, then the flags on the trained model (4 scales), on d16 and on d30 (10 scales),
# each None where the mode has no counterpart, and the scales from the end that it touches.
MODES = [
    ("exact", "the exact path", "", "", "", 0),
    ("cfg-last-1", "no guidance at the last scale", "--cfg-until-scale 3", "--cfg-until-scale 9",
     "--cfg-until-scale 9", 1),
    ("cfg-last-2", "no guidance at the last 2 scales", "--cfg-until-scale 2", "--cfg-until-scale 8",
     "--cfg-until-scale 8", 2),
    ("prune-0.5", "FastVAR: 50 % of the tokens pruned at the last 2 scales", "--prune 0.5", "--prune 0.5",
     "--prune 0.5", 2),
    ("prune-0.25", "FastVAR: 25 % pruned at the last 2 scales", "--prune 0.25", "--prune 0.25", "--prune 0.25", 2),
    ("refine-last-1", "CoDe: the refiner draws the last scale", "--refiner fmnist-d4 --refine-from-scale 4", None,
     "--refiner d16 --refine-from-scale 10", 1),
    ("refine-last-2", "CoDe: the refiner draws the last 2 scales (CoDe's N = 8 at d30)",
     "--refiner fmnist-d4 --refine-from-scale 3", None, "--refiner d16 --refine-from-scale 9", 2),
    ("refine-last-3", "CoDe: the refiner draws the last 3 scales", "--refiner fmnist-d4 --refine-from-scale 2", None,
     "--refiner d16 --refine-from-scale 8", 3),
    ("refine-last-2+cfg-last-1", "refine-last-2 and no guidance at the last scale",
     "--refiner fmnist-d4 --refine-from-scale 3 --cfg-until-scale 3", None,
     "--refiner d16 --refine-from-scale 9 --cfg-until-scale 9", 2),
    ("int8", "LiteVAR's W8A8: int8 weights (per channel) and activations (per token), every scale",
     "--precision int8", "--precision int8", "--precision int8", 10),
    ("refine-last-2+int8", "refine-last-2 with both models in int8",
     "--refiner fmnist-d4 --refine-from-scale 3 --precision int8", None,
     "--refiner d16 --refine-from-scale 9 --precision int8", 10),
]

PAPERS = [
    "FastVAR (ICCV 2025): 2.7x over FlashAttention-accelerated VAR-family models at high resolution with < 1 % "
    "drop; its reference code prunes 40 % and 50 % at the two largest scales.",
    "SkipVAR: 1.81x on average (SSIM above 0.88), up to 2.62x on GenEval, with unconditional-branch replacement "
    "as one of its strategies; StageVAR drops guidance at late stages likewise.",
    "CoDe (CVPR 2025): VAR-d30 drafting 8 scales and VAR-d16 refining 2: 1.7x, FID 1.95 -> 1.98.",
    "LiteVAR: training-free W8A8 quantisation of VAR (weights per channel, activations per token) with little FID "
    "change, beside its attention savings (not implemented here: spec/fast-modes.md says why).",
]


def share(tokens, last):
    """The share of a model's tokens in its last `last` scales (all of them past the model's count)."""
    return sum(tokens[max(0, len(tokens) - last):]) / sum(tokens) if last else 0.0


def time_varps(varps, depth, flags, repeats, threads, scratch):
    report = compare.varps_bench(varps, ["--preset", f"d{depth}", "--streams", "1"] + flags.split(), repeats, threads,
                                 os.path.join(scratch, f"varps-d{depth}"))
    r = report["runs"][0]
    return [ms / 1000 for ms in r["latency_samples_ms"]], report["machine"].get("backend_info", "")


def speed(args):
    peer = argparse.Namespace(isa="native", threads=args.threads, runner=args.runner, official=args.official,
                              repeats=args.repeats)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for depth in args.depths:
            sides = [(name, flags16 if depth == 16 else flags30) for name, _, _, flags16, flags30, _ in MODES]
            sides = [(n, f) for n, f in sides if f is not None] + [("official", None)]
            samples = {n: [] for n, _ in sides}
            for rnd in range(args.rounds):
                k = rnd % len(sides)
                for name, flags in sides[k:] + sides[:k]:
                    print(f"d{depth} round {rnd + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                    if name == "official":
                        got = compare.time_official(peer, args.python, "fp32", depth, 1)["samples_s"]
                    else:
                        got, info = time_varps(args.varps, depth, flags, args.repeats, args.threads, scratch)
                        results.setdefault("varps_build_int8" if "--precision int8" in flags else "varps_build", info)
                    samples[name] += got
            results[f"d{depth}"] = {n: {"flags": f, "samples_s": samples[n], **compare.summary(samples[n])}
                                   for n, f in sides}
    results["official_build"] = compare.torch_build(args.python, "native")
    results["rounds"], results["repeats"] = args.rounds, args.repeats
    return results


def token_agreement(varps, flags, per_class, exact_tokens=None):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.json")
        cmd = [varps, "generate", "--class", ",".join(map(str, range(10))), "--streams", str(per_class), "--seed", "0",
               "--cfg", "1.5", "--top-k", "900", "--top-p", "0.96", "--out", os.path.join(tmp, "png"), "--tokens-out",
               path, "-q"] + flags.split()
        subprocess.run(cmd, check=True)
        tokens = [img["tokens"] for img in json.loads(pathlib.Path(path).read_text())["images"]]
    if exact_tokens is None:
        return tokens, None
    per_scale = []
    for s in range(len(FMNIST_TOKENS)):
        same = sum(a == b for t, e in zip(tokens, exact_tokens) for a, b in zip(t[s], e[s]))
        per_scale.append(same / sum(len(e[s]) for e in exact_tokens))
    return tokens, per_scale


def quality(args):
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    # quality.py needs numpy: this interpreter's, or Debian's python3-numpy.
    python = sys.executable if importlib.util.find_spec("numpy") else "/usr/bin/python3"
    cmd = [python, str(ROOT / "scripts" / "quality.py"), "--varps", args.varps, "--per-class",
           str(args.per_class), "--json", str(OUT / "quality.json"), "--grid", str(OUT / "NAME.png")]
    for name, _, fm, _, _, _ in MODES:
        cmd += ["--setting", f"{name}={fm}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    q = json.loads((OUT / "quality.json").read_text())
    (OUT / "quality.json").unlink()
    exact_tokens, _ = token_agreement(args.varps, "", args.per_class)
    for name, _, fm, _, _, _ in MODES:
        if name != "exact":
            _, q["settings"][name]["token_agreement"] = token_agreement(args.varps, fm, args.per_class, exact_tokens)
        else:
            q["settings"][name]["token_agreement"] = [1.0] * len(FMNIST_TOKENS)
    return q


def fmt_side(side):
    return f"{side['median']:.2f} [{side['min']:.2f}–{side['max']:.2f}]"


def page(results, args):
    q, sp = results.get("quality"), results.get("speed")
    lines = ["# Fast modes: speed on real sizes, quality on the trained model", "",
             "The training-free fast modes of [spec/fast-modes.md](spec/fast-modes.md), each measured twice: its "
             "speed on random weights of the released sizes (what it saves), and its quality on the built-in "
             "Fashion-MNIST model (what it costs). Random weights give flat logits, so they cannot show a quality "
             "cost; the trained model is small (depth 8, 4 scales, 32x32 images), so a mode is given on it with "
             "the flags that touch the same last scales. The token-share columns say how much of each model's "
             "tokens that is: the trained model's last scales hold a larger share of its tokens than d30's, so on "
             "it a mode is at least as aggressive as on d30.", "",
             f"Made by `scripts/fast-modes-page.py` ({results['command_line']}) at commit {results['commit']} on: "
             f"{results['machine']}.", ""]
    if sp:
        base = {d: sp[d]["exact"]["median"] for d in (f"d{x}" for x in args.depths)}
        off = {d: sp[d]["official"]["median"] for d in (f"d{x}" for x in args.depths)}
        lines += ["## Speed: one image, seconds (median [min–max])", "",
                  f"{args.rounds} rounds x {args.repeats} timed calls per side, interleaved; varps fp32 "
                  f"({sp.get('varps_build', '')}), the int8 rows `--precision int8` "
                  f"({sp.get('varps_build_int8', '')}); the official code on {sp['official_build']}, fp32. "
                  "× exact and × official: how many times faster than the exact varps path and than the official "
                  "code.", ""]
        head = "| mode | what it does | tokens touched (d30) |"
        align = "| --- | --- | ---: |"
        for d in args.depths:
            head += f" d{d} s | × exact | × official |"
            align += " ---: | ---: | ---: |"
        lines += [head, align]
        for name, what, _, f16, f30, last in MODES:
            row = f"| {name} | {what} | {100 * share(RELEASED_TOKENS, last):.0f} % |"
            for d in args.depths:
                side = sp[f"d{d}"].get(name)
                if side is None:
                    row += " — | — | — |"
                else:
                    row += f" {fmt_side(side)} | {base[f'd{d}'] / side['median']:.2f}× | " \
                           f"{off[f'd{d}'] / side['median']:.2f}× |"
            lines.append(row)
        row = "| official | the official code, fp32 | |"
        for d in args.depths:
            row += f" {fmt_side(sp[f'd{d}']['official'])} | {off[f'd{d}'] / base[f'd{d}']:.2f}× slower | 1.00× |"
        lines += [row, "", "Flags at d30 (d16 the same where given): "
                  + "; ".join(f"{n}: `{f30}`" for n, _, _, _, f30, _ in MODES if f30) + ".", ""]
    if q:
        ex = q["settings"]["exact"]
        lines += ["## Quality on the trained model", "",
                  f"{ex['images']} images per setting (the same seeds), measured as in [quality.md](quality.md). "
                  "Δ: against the exact path (accuracy in points, FD-FMNIST in per cent). Token agreement: the share "
                  "of each scale's tokens equal to the exact path's, on the same seeds (`varps generate "
                  "--tokens-out`, cfg 1.5).", "",
                  "| mode | flags (trained model) | tokens touched | class accuracy | Δ | FD-FMNIST | Δ | diversity "
                  "| token agreement per scale | within 2 points and 10 %? |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for name, _, fm, _, _, last in MODES:
            f = q["settings"][name]
            da = 100 * (f["class_accuracy"] - ex["class_accuracy"])
            dfd = 100 * (f["fd_fmnist"] / ex["fd_fmnist"] - 1)
            ok = "—" if name == "exact" else ("yes" if da >= -2 and dfd <= 10 else "no")
            agree = " · ".join(f"{100 * a:.0f}" for a in f["token_agreement"])
            lines.append(f"| {name} | `{fm or '(defaults)'}` | {100 * share(FMNIST_TOKENS, last):.0f} % | "
                         f"{100 * f['class_accuracy']:.1f} % | {da:+.1f} | {f['fd_fmnist']:.2f} | {dfd:+.1f} % | "
                         f"{f['diversity_feature_distance']:.2f} | {agree} % | {ok} |")
        lines += ["", "Images (one row per class, the first ten seeds of each; the same seeds in every grid):", ""]
        lines += [f"- `{n}`: ![{n}](fast-modes/{n}.png)" for n, *_ in MODES]
        lines.append("")
    if q and sp and "d30" in sp:
        lines += verdict(q, sp)
    lines += ["## What the papers report", ""] + [f"- {p}" for p in PAPERS] + [""]
    return "\n".join(lines)


def passes(q, name):
    ex, f = q["settings"]["exact"], q["settings"][name]
    return (f["class_accuracy"] - ex["class_accuracy"] >= -0.02 and f["fd_fmnist"] / ex["fd_fmnist"] - 1 <= 0.10)


def verdict(q, sp):
    """Which modes reach 2x at d30, and what their counterparts on the trained model cost, matched two ways."""
    d30, exact = sp["d30"], sp["d30"]["exact"]["median"]
    lines = ["## Which mode reaches 2x at d30 within the quality bounds", "",
             "The bounds: class accuracy within 2 points and FD-FMNIST within 10 % of the exact path's on the "
             "trained model. A d30 mode is matched to a setting of the trained model in two ways: by the number of "
             "last scales it touches (the same flags, counted from the end), and by the share of the tokens it "
             "touches (the trained model's setting of the same kind that touches the smallest share at least as "
             "large as d30's). The trained model has 4 scales and d30 10, so the two can differ.", ""]
    fast = [(n, last) for n, _, _, _, f30, last in MODES if f30 and n in d30 and exact / d30[n]["median"] >= 2]
    if not fast:
        lines += ["No mode or combination reaches 2x at d30 here.", ""]
    for name, last in fast:
        kind = name.rsplit("-", 1)[0]
        same = [(n, l) for n, *_, l in MODES if n.rsplit("-", 1)[0] == kind and "+" not in n]
        by_share = min(((n, l) for n, l in same if share(FMNIST_TOKENS, l) >= share(RELEASED_TOKENS, last)),
                       key=lambda nl: share(FMNIST_TOKENS, nl[1]), default=None)
        lines.append(f"- `{name}`: {exact / d30[name]['median']:.2f}x at d30, touching "
                     f"{100 * share(RELEASED_TOKENS, last):.0f} % of its tokens. By the number of scales: `{name}` "
                     f"on the trained model ({100 * share(FMNIST_TOKENS, last):.0f} % of its tokens) is "
                     f"{'within' if passes(q, name) else 'outside'} the bounds.")
        if by_share:
            n, l = by_share
            lines.append(f"  By the share of tokens: `{n}` ({100 * share(FMNIST_TOKENS, l):.0f} %) is "
                         f"{'within' if passes(q, n) else 'outside'} the bounds.")
    lines.append("")
    # int8 changes the arithmetic of every product, not which rows and tokens run: say what the
    # scheduling modes reach without it.
    scheduling = [(exact / d30[n]["median"], n) for n, _, _, _, f30, _ in MODES
                  if f30 and n in d30 and n != "exact" and "int8" not in n and passes(q, n)]
    if scheduling:
        x, n = max(scheduling)
        lines += [f"Without int8 (the one setting here that changes the products' arithmetic rather than which rows "
                  f"and tokens run), the fastest mode within the bounds with its own flags on the trained model is "
                  f"`{n}`: {x:.2f}x at d30.", ""]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--varps", default=str(ROOT / "build" / "varps"))
    ap.add_argument("--official", help="the official VAR tree (extracted from the peer tarball)")
    ap.add_argument("--runner", help="the peer runner that times the official generate call")
    ap.add_argument("--python", help="the Python with the PyTorch the official code runs on")
    ap.add_argument("--depths", default="16,30")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--only", choices=("quality", "speed", "page"))
    args = ap.parse_args()
    args.depths = compare.parse_list(args.depths)
    command_line = " ".join(a if " " not in a else repr(a) for a in sys.argv[1:]) or "no flags"
    if args.only in (None, "speed") and not (args.official and args.runner and args.python):
        ap.error("the speed table needs --official, --runner and --python (or --only quality)")
    if args.per_class * 10 < 500:
        ap.error("--per-class: at least 50 (500 images per setting)")
    OUT.mkdir(parents=True, exist_ok=True)
    saved = OUT / "fast-modes.json"
    results = json.loads(saved.read_text()) if saved.exists() and args.only else {}
    if args.only != "page":
        results["command_line"] = command_line
        results["machine"] = compare.machine_line()
        results["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=ROOT).stdout.strip() or "unknown"
    if args.only in (None, "quality"):
        results["quality"] = quality(args)
    if args.only in (None, "speed"):
        results["speed"] = speed(args)
    if args.only == "page":
        args.depths = [int(k[1:]) for k in results["speed"] if k[0] == "d" and k[1:].isdigit()]
        args.rounds, args.repeats = results["speed"]["rounds"], results["speed"]["repeats"]
    saved.write_text(json.dumps(results, indent=1) + "\n")
    text = page(results, args)
    (ROOT / "docs" / "fast-modes.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
