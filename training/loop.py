"""What every training stage shares: seeds, a resumable state file, a time
budget per piece, and a progress line."""
import math
import os
import random
import sys
import time

import numpy as np
import torch


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def cosine_lr(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def optimiser_step(opt, loss, lr, clip_params=None, clip=2.0):
    """One update at learning rate `lr` (times a group's "lr_scale" where it
    has one) from the gradients of `loss`, their norm over `clip_params`
    clipped to `clip` when those are given."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, clip)
    opt.step()


def batch_order(n, batch, seed, epoch):
    """Indices of every batch of one epoch; the same for a given seed and epoch,
    so a resumed run sees the batches an uninterrupted one would."""
    perm = np.random.RandomState(seed * 1000 + epoch).permutation(n)
    return [perm[i:i + batch] for i in range(0, n - batch + 1, batch)]


class ResumableState:
    """One file holding the model, optimiser, step and RNG state of a stage."""

    def __init__(self, path):
        self.path = str(path)

    def load(self, modules, optimiser):
        if not os.path.exists(self.path):
            return 0
        st = torch.load(self.path, map_location="cpu", weights_only=False)
        for name, m in modules.items():
            m.load_state_dict(st["modules"][name])
        optimiser.load_state_dict(st["optimiser"])
        torch.set_rng_state(st["torch_rng"])
        return st["step"]

    def save(self, modules, optimiser, step):
        tmp = self.path + ".tmp"
        torch.save({"modules": {n: m.state_dict() for n, m in modules.items()},
                    "optimiser": optimiser.state_dict(), "step": step,
                    "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, self.path)


class Progress:
    """A one-line progress bar on stderr: step, rate, time left, the latest figures."""

    def __init__(self, label, total, start):
        self.label, self.total, self.start_step = label, total, start
        self.t0 = time.time()
        self.last = 0.0

    def update(self, step, **figures):
        now = time.time()
        if now - self.last < 1.0 and step < self.total:
            return
        self.last = now
        done = step - self.start_step
        rate = done / max(1e-9, now - self.t0)
        left = (self.total - step) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * step / self.total)
        figs = " ".join(f"{k} {v:.4g}" for k, v in figures.items())
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} "
                         f"{rate:.2f} it/s, {left / 60:.0f} min left  {figs}   ")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")


class Deadline:
    def __init__(self, minutes):
        self.end = time.time() + minutes * 60 if minutes > 0 else float("inf")

    def passed(self):
        return time.time() >= self.end
