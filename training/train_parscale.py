#!/usr/bin/env python3
"""Train ParScale adapters (P streams over one frozen backbone) on a built-in
Fashion-MNIST VAR, and write them in the format `varps --adapter` reads.

Only the adapter learns: per stream and block a prefix of T keys and values,
and the aggregation network (docs/spec/parscale.md). The objective is the
model's own: cross-entropy of the aggregated logits over all tokens of the
training token maps, classes dropped to the unconditional class at rate 0.1
so that guidance still works. Deterministic for a given --seed; resumable:
run the same command again and it goes on from the last saved step.

  python training/train_parscale.py --official /tmp/var-official

P = 1 (the default list is 1,2,4,8) trains a prefix for a single stream: the
control that tells what the prefix alone buys, without parallel streams.

Writes models/fmnist/parscale_<depth>_p<P>.safetensors for every finished P
and models/fmnist/parscale_<depth>.json (steps, time, held-out loss, and the held-out
loss and size of every trained depth).
"""
import argparse
import json
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fmnist_data  # noqa: E402
import official_models  # noqa: E402
import parscale  # noqa: E402
from export import sha256  # noqa: E402
from loop import (Deadline, Progress, ResumableState, batch_order, cosine_lr, optimiser_step,  # noqa: E402
                  seed_everything)
from safetensors_io import write_safetensors  # noqa: E402
from train_var import split_maps, token_cross_entropy  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH = 64            # images per step; the backbone sees P times as many rows
STEPS = 2000
PEAK_LR = 1e-2        # the prefixes'
AGGREGATE_LR_SCALE = 0.1  # the aggregation learns 10x slower: faster, its softmax saturates at one stream per token
WARMUP = 100
COND_DROP = 0.1
HELD_OUT = 2000       # test-split token maps behind the held-out loss


def load_backbone(models, depth):
    vae = official_models.build_vqvae(test_mode=True)
    vae.load_state_dict(torch.load(models / "vae.pth", map_location="cpu"))
    var = official_models.build_var(vae, depth, cond_drop_rate=0.0)
    var.load_state_dict(torch.load(models / f"var_{depth}.pth", map_location="cpu"))
    var.eval()
    for p in var.parameters():
        p.requires_grad_(False)
    return vae, var


def token_maps(args, work, vae):
    """The training maps (and mirror images) and the test maps: the tokens
    stage's file when there is one, else encoded here with the exported tokenizer."""
    path = work / "tokens.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=False)
    import encode_tokens
    print(f"{path}: missing; encoding Fashion-MNIST with {args.models / 'vae.pth'}", file=sys.stderr)
    return encode_tokens.token_maps(vae, args.data)[0]


@torch.no_grad()
def var_inputs(vae, maps, patch_nums):
    return torch.cat([vae.quantize.idxBl_to_var_input(split_maps(maps[i:i + 2000], patch_nums))
                      for i in range(0, len(maps), 2000)])


@torch.no_grad()
def held_out_loss(var, adapter, labels, x, maps, weights=None):
    """Mean cross-entropy per token; with an adapter, its aggregation weights
    [images, L, P] are appended to `weights` when that is a list."""
    total = 0.0
    for i in range(0, len(maps), 250):
        if adapter is None:
            logits = var(labels[i:i + 250], x[i:i + 250])
        else:
            logits = parscale.teacher_forced_logits(var, adapter, labels[i:i + 250], x[i:i + 250], weights)
        total += token_cross_entropy(logits, maps[i:i + 250], reduction="sum").item()
    return total / maps.numel()


def weight_summary(weights, P, smooth):
    """How the aggregation uses the streams on held-out tokens: the share of
    tokens whose largest weight sits at its bound 1 − s + s/P (one stream
    chosen outright), and the share of tokens each stream wins."""
    w = torch.cat(weights).reshape(-1, P)
    top = 1 - smooth + smooth / P
    wins = torch.bincount(w.argmax(dim=1), minlength=P).float() / len(w)
    return {"one_stream_share": round((w.max(dim=1).values > top - 1e-3).float().mean().item(), 4),
            "stream_win_shares": [round(v, 4) for v in wins.tolist()]}


def record_in_manifest(out, path):
    """The models' manifest (export.py) lists every shipped file with its size and hash."""
    manifest = out / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        m.setdefault("files", {})[path.name] = {"bytes": path.stat().st_size, "sha256": sha256(path)}
        manifest.write_text(json.dumps(m, indent=1) + "\n")


def train_streams(args, var, data, P, report):
    work, steps = args.work, args.steps
    maps, labels, x_all = data["train"]
    torch.manual_seed(args.seed + 100 + P)
    adapter = parscale.StreamAdapter.for_model(var, P, args.prefix_tokens, args.smooth)
    first = torch.from_numpy(batch_order(len(maps), BATCH, args.seed + 11, 0)[0])
    parscale.init_prefixes_from_model(var, adapter, labels[first], x_all[first], seed=args.seed + 200 + P)
    opt = torch.optim.AdamW([{"params": [adapter.prefix_k, adapter.prefix_v]},
                             {"params": adapter.aggregate.parameters(), "lr_scale": AGGREGATE_LR_SCALE}],
                            lr=PEAK_LR, betas=(0.9, 0.95), weight_decay=0.0)
    state = ResumableState(work / f"parscale-{args.depth}-p{P}.state")
    step = state.load({"adapter": adapter}, opt)
    entry = report.setdefault(f"p{P}", {"seconds": 0.0})
    deadline = Deadline(args.minutes)
    bar = Progress(f"parscale {args.depth} P={P}", steps, step)
    per_epoch = len(maps) // BATCH
    t0 = time.time()
    while step < steps and not deadline.passed():
        epoch, k = divmod(step, per_epoch)
        idx = torch.from_numpy(batch_order(len(maps), BATCH, args.seed + 11, epoch)[k])
        label = labels[idx]
        label = torch.where(torch.rand(len(idx)) < COND_DROP, official_models.NUM_CLASSES, label)
        loss = token_cross_entropy(parscale.teacher_forced_logits(var, adapter, label, x_all[idx]), maps[idx].long())
        optimiser_step(opt, loss, cosine_lr(step, steps, PEAK_LR, WARMUP), adapter.parameters())
        step += 1
        bar.update(step, loss=loss.item())
        if step % 200 == 0:
            state.save({"adapter": adapter}, opt, step)
    bar.close()
    state.save({"adapter": adapter}, opt, step)
    entry["seconds"] = round(entry["seconds"] + time.time() - t0, 1)
    entry["steps"] = step
    entry["adapter_parameters"] = sum(p.numel() for p in adapter.parameters())
    if step < steps:
        return False
    path = args.out / f"parscale_{args.depth}_p{P}.safetensors"
    write_safetensors(path, adapter.tensors(), adapter.metadata())
    record_in_manifest(args.out, path)
    test_labels, test_x, test_maps = data["test"]
    weights = []
    entry["held_out_loss"] = round(held_out_loss(var, adapter, test_labels, test_x, test_maps, weights), 5)
    entry["aggregation"] = weight_summary(weights, P, args.smooth)
    print(f"P={P}: wrote {path}; held-out loss {entry['held_out_loss']:.4f} "
          f"(plain {report['plain_held_out_loss']:.4f})", file=sys.stderr)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="folder of the official VAR tree (the peer tarball, extracted)")
    ap.add_argument("--models", type=pathlib.Path, default=ROOT / "models" / "fmnist",
                    help="the trained backbone and tokenizer (default: %(default)s)")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="where the adapters go (default: --models)")
    ap.add_argument("--work", type=pathlib.Path, default=ROOT / "training" / "work",
                    help="resumable state (default: %(default)s)")
    ap.add_argument("--data", default=fmnist_data.DEFAULT_ROOT, help="Fashion-MNIST IDX folder, when the token "
                    "maps must be encoded (default: %(default)s)")
    ap.add_argument("--depth", default="d4", choices=sorted(official_models.VAR_CONFIGS), help="backbone (default: d4)")
    ap.add_argument("--streams", default="1,2,4,8", help="comma list of P (default: %(default)s)")
    ap.add_argument("--prefix-tokens", type=int, default=8, help="prefix length T per stream and block (default: 8)")
    ap.add_argument("--smooth", type=float, default=0.01, help="weight smoothing s: every weight >= s/P (default: 0.01)")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"steps of {BATCH} images per P (default: %(default)s)")
    ap.add_argument("--minutes", type=float, default=50, help="stop each P after this long; rerun to resume (0: no limit)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        stream_counts = [int(p) for p in args.streams.split(",") if p]
    except ValueError:
        ap.error(f"--streams: '{args.streams}' is not a comma list of integers")
    if not stream_counts or any(p < 1 for p in stream_counts):
        ap.error("--streams: every P must be >= 1")
    if args.prefix_tokens < 0 or args.steps < 1 or args.minutes < 0 or not 0 <= args.smooth < 1:
        ap.error("--prefix-tokens >= 0, --steps >= 1, --minutes >= 0 and 0 <= --smooth < 1")
    args.out = args.out or args.models
    for f in ("vae.pth", f"var_{args.depth}.pth"):
        if not (args.models / f).is_file():
            ap.error(f"{args.models / f}: missing (train the models first: training/train.py)")
    official_models.import_official(args.official)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    vae, var = load_backbone(args.models, args.depth)
    tokens = token_maps(args, args.work, vae)
    pn = official_models.VQVAE_CONFIG["patch_nums"]
    data = {"train": (tokens["train_maps"], tokens["train_labels"], var_inputs(vae, tokens["train_maps"], pn)),
            "test": (tokens["test_labels"][:HELD_OUT], var_inputs(vae, tokens["test_maps"][:HELD_OUT], pn),
                     tokens["test_maps"][:HELD_OUT].long())}
    report_path = args.out / f"parscale_{args.depth}.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update({"backbone": f"var_{args.depth}.pth", "prefix_tokens": args.prefix_tokens, "smooth": args.smooth,
                   "batch_images": BATCH, "steps": args.steps, "peak_lr": PEAK_LR,
                   "aggregate_lr_scale": AGGREGATE_LR_SCALE, "seed": args.seed,
                   "held_out": f"first {HELD_OUT} test-split token maps, conditional, mean cross-entropy per token"})
    if "plain_held_out_loss" not in report:
        report["plain_held_out_loss"] = round(held_out_loss(var, None, *data["test"]), 5)
    # The other trained depths, as the "more parameters" comparison.
    report.setdefault("depths", {})
    for depth in official_models.VAR_CONFIGS:
        if depth not in report["depths"] and (args.models / f"var_{depth}.pth").is_file():
            other = var if depth == args.depth else load_backbone(args.models, depth)[1]
            report["depths"][depth] = {"parameters": sum(p.numel() for p in other.parameters()),
                                       "held_out_loss": round(held_out_loss(other, None, *data["test"]), 5)}
    for P in stream_counts:
        finished = train_streams(args, var, data, P, report)
        report_path.write_text(json.dumps(report, indent=1) + "\n")
        if not finished:
            print(f"stopped at P={P} (time budget); run the same command again to go on", file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
