#!/usr/bin/env python3
"""Train the built-in Fashion-MNIST models: tokenizer, two VAR depths, classifier.

Every stage is deterministic for a given --seed and resumable: run the same
command again and it goes on from the last saved step (a stage saves every few
hundred steps and when it stops). Each stage stops after --minutes; stages
already finished are skipped. `export` writes the
finished weights as the official code writes them (state-dict .pth files).

  python training/train.py --official /tmp/var-official --minutes 50
"""
import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import fmnist_data  # noqa: E402
import official_models  # noqa: E402

STAGES = ["vqvae", "tokens", "classifier", "var-d8", "var-d4", "export"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="folder of the official VAR tree (the peer tarball, extracted)")
    ap.add_argument("--data", default=fmnist_data.DEFAULT_ROOT, help="Fashion-MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--work", default="training/work", help="resumable state and intermediate files (default: %(default)s)")
    ap.add_argument("--out", default="models/fmnist", help="where export writes the checkpoints (default: %(default)s)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma list, in order (default: all)")
    ap.add_argument("--minutes", type=float, default=50, help="stop a stage after this long; rerun to resume (0: no limit)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.minutes < 0:
        ap.error("--minutes must be >= 0")
    stages = [s for s in args.stages.split(",") if s]
    for s in stages:
        if s not in STAGES:
            ap.error(f"unknown stage '{s}' (known: {', '.join(STAGES)})")
    official_models.import_official(args.official)
    torch.set_num_threads(args.threads)
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import loop
    loop.seed_everything(args.seed)
    for s in stages:
        print(f"== stage {s}", file=sys.stderr)
        finished = run_stage(s, args, work)
        if not finished:
            print(f"stopped inside stage {s} (time budget); run the same command again to go on", file=sys.stderr)
            return 3
    return 0


def run_stage(name, args, work):
    if name == "vqvae":
        import train_vqvae
        return train_vqvae.train(args, work)
    if name == "tokens":
        import encode_tokens
        return encode_tokens.run(args, work)
    if name.startswith("var-"):
        import train_var
        return train_var.train(args, work, name[len("var-"):])
    if name == "classifier":
        import train_classifier
        return train_classifier.train(args, work)
    if name == "export":
        import export
        return export.run(args, work)
    raise AssertionError(name)


if __name__ == "__main__":
    sys.exit(main())
