"""Stages 3 and 4: the class-conditional VAR transformer (official class) on
the tokenizer's token maps, with the official objective: cross-entropy over
all L tokens, weighted 1/L, class labels dropped to the unconditional class
at rate 0.1 inside VAR.forward so classifier-free guidance works."""
import torch
import torch.nn.functional as F

import official_models
from encode_tokens import load_trained_vqvae
from loop import Deadline, Progress, ResumableState, batch_order, cosine_lr, optimiser_step

BATCH = 128
PEAK_LR = 1e-3
WEIGHT_DECAY = 0.05
STEPS = {"d4": 2500, "d8": 3500}


def split_maps(maps, patch_nums):
    out, at = [], 0
    for pn in patch_nums:
        out.append(maps[:, at:at + pn * pn].long())
        at += pn * pn
    return out


def token_cross_entropy(logits, maps, reduction="mean"):
    """VAR's objective: cross-entropy of logits [B, L, V] against token maps [B, L]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), maps.reshape(-1), reduction=reduction)


def train(args, work, name):
    steps = STEPS[name]
    vae = load_trained_vqvae(work)
    tokens = torch.load(work / "tokens.pt", map_location="cpu", weights_only=False)
    maps, labels = tokens["train_maps"], tokens["train_labels"]
    patch_nums = official_models.VQVAE_CONFIG["patch_nums"]
    with torch.no_grad():
        x_all = torch.cat([vae.quantize.idxBl_to_var_input(split_maps(maps[i:i + 2000], patch_nums))
                           for i in range(0, len(maps), 2000)])
    torch.manual_seed(args.seed + (1 if name == "d4" else 2))
    var = official_models.build_var(vae, name, cond_drop_rate=0.1)
    var.train()
    decay = [p for n, p in var.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in var.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=PEAK_LR, betas=(0.9, 0.95))
    state = ResumableState(work / f"var-{name}.state")
    step = state.load({"var": var}, opt)
    if step >= steps:
        return True
    per_epoch = len(maps) // BATCH
    deadline = Deadline(args.minutes)
    bar = Progress(f"var {name}", steps, step)
    while step < steps and not deadline.passed():
        epoch, k = divmod(step, per_epoch)
        idx = torch.from_numpy(batch_order(len(maps), BATCH, args.seed + 7, epoch)[k])
        loss = token_cross_entropy(var(labels[idx], x_all[idx]), maps[idx].long())
        optimiser_step(opt, loss, cosine_lr(step, steps, PEAK_LR, 300), var.parameters())
        step += 1
        bar.update(step, loss=loss.item())
        if step % 500 == 0:
            state.save({"var": var}, opt, step)
    bar.close()
    state.save({"var": var}, opt, step)
    return step >= steps
