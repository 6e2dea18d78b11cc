"""Stage 1: the multi-scale VQVAE (official classes) on Fashion-MNIST.

The official repository has no tokenizer training loop; this one minimises
reconstruction error (MSE + L1) plus the quantizer's own loss (codebook term
and commitment term, beta 0.25). Codewords that no token used over the last
window are restarted on residual vectors of the current batch, so the small
data set does not leave most of the codebook dead.
"""
import torch
import torch.nn.functional as F

import fmnist_data
import official_models
from loop import Deadline, Progress, ResumableState, batch_order, cosine_lr, optimiser_step

STEPS = 3000
BATCH = 64
PEAK_LR = 4e-4
RESTART_EVERY = 100
RESTART_UNTIL = 2200


def quantizer_walk(vae, f):
    """The quantizer's scale-by-scale walk over the latent f (as
    VectorQuantizer2 does it): for each scale, the residual vectors it matches
    [B*pn*pn, C] and their squared distances to every codeword; the nearest
    codeword is then taken off the residual."""
    q = vae.quantize
    B, C, H, W = f.shape
    rest = f.clone()
    SN = len(q.v_patch_nums)
    for si, pn in enumerate(q.v_patch_nums):
        r = F.interpolate(rest, size=(pn, pn), mode="area") if si != SN - 1 else rest
        r_nc = r.permute(0, 2, 3, 1).reshape(-1, C)
        d = r_nc.square().sum(1, keepdim=True) + q.embedding.weight.square().sum(1)
        d.addmm_(r_nc, q.embedding.weight.T, alpha=-2, beta=1)
        yield r_nc, d
        h = q.embedding(d.argmin(1)).view(B, pn, pn, C).permute(0, 3, 1, 2)
        if si != SN - 1:
            h = F.interpolate(h, size=(H, W), mode="bicubic")
        rest = rest - q.quant_resi[si / (SN - 1)](h)


def scale_residuals(vae, f):
    """The residual vectors the quantizer matches at each scale, and the codes it picks."""
    vectors, codes = [], []
    for r_nc, d in quantizer_walk(vae, f):
        vectors.append(r_nc)
        codes.append(d.argmin(1))
    return torch.cat(vectors), torch.cat(codes)


def train(args, work):
    official_models.one_process_group()
    images, _ = fmnist_data.load_split(args.data, "train")
    x_all = torch.from_numpy(fmnist_data.to_tokenizer_input(images))
    torch.manual_seed(args.seed)
    vae = official_models.build_vqvae(test_mode=False)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=PEAK_LR, betas=(0.9, 0.95), weight_decay=0.0)
    state = ResumableState(work / "vqvae.state")
    step = state.load({"vae": vae}, opt)
    if step >= STEPS:
        return True
    per_epoch = len(x_all) // BATCH
    deadline = Deadline(args.minutes)
    bar = Progress("vqvae", STEPS, step)
    hits = torch.zeros(vae.quantize.vocab_size)
    while step < STEPS and not deadline.passed():
        epoch, k = divmod(step, per_epoch)
        idx = batch_order(len(x_all), BATCH, args.seed, epoch)[k]
        x = x_all[idx]
        rec, _, vq_loss = vae(x)
        rec_loss = F.mse_loss(rec, x) + F.l1_loss(rec, x)
        loss = rec_loss + vq_loss
        optimiser_step(opt, loss, cosine_lr(step, STEPS, PEAK_LR, 200), vae.parameters())
        step += 1
        if step <= RESTART_UNTIL:
            with torch.no_grad():
                vectors, codes = scale_residuals(vae, vae.quant_conv(vae.encoder(x)))
                hits += torch.bincount(codes, minlength=hits.numel()).float()
                if step % RESTART_EVERY == 0:
                    dead = (hits == 0).nonzero().flatten()
                    if dead.numel():
                        pick = torch.randint(0, vectors.shape[0], (dead.numel(),))
                        vae.quantize.embedding.weight[dead] = vectors[pick]
                    hits.zero_()
        psnr = 10 * torch.log10(4.0 / F.mse_loss(rec.detach().clamp(-1, 1), x)).item()
        bar.update(step, loss=loss.item(), psnr=psnr)
        if step % 250 == 0:
            state.save({"vae": vae}, opt, step)
    bar.close()
    state.save({"vae": vae}, opt, step)
    return step >= STEPS
