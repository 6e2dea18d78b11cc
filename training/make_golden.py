#!/usr/bin/env python3
"""Reference outputs of the official code on the trained built-in model, in
the layout of the other golden cases (tests/data/golden/<case>): teacher-forced
logits, f_hat per scale and the decoded image for token maps of real test
images, greedy generation at three guidance weights (tokens, the guided logits
handed to the sampler, final f_hat, image), and the encoder's latent, tokens
and reconstruction of test images. The checkpoints are not copied: config.json
names them (relative to the repository root).

  python training/make_golden.py --official /tmp/var-official --out tests/data/golden/fmnist
"""
import argparse
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fmnist_data  # noqa: E402
import official_models  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABELS = [7, 0, 9, 10]           # sneaker, T-shirt, ankle boot, unconditional
TEST_IMAGES = [0, 1, 2, 3]       # test-split images behind the teacher-forcing and encoder inputs
CFGS = {"cfg0p0": 0.0, "cfg1p5": 1.5, "cfg4p0": 4.0}


def vq_gaps(vae, x):
    """Per image, the smallest gap between the best and second-best squared
    codeword distance over the encoder's decisions (every scale, position)."""
    from train_vqvae import quantizer_walk
    B = x.shape[0]
    gaps = torch.full((B,), float("inf"))
    for _, d in quantizer_walk(vae, vae.quant_conv(vae.encoder(x))):
        two = d.topk(2, dim=1, largest=False).values
        gaps = torch.minimum(gaps, (two[:, 1] - two[:, 0]).view(B, -1).min(1).values)
    return gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True)
    ap.add_argument("--models", default=str(ROOT / "models" / "fmnist"))
    ap.add_argument("--depth", default="d8", choices=sorted(official_models.VAR_CONFIGS))
    ap.add_argument("--data", default=fmnist_data.DEFAULT_ROOT)
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "golden" / "fmnist"))
    args = ap.parse_args()
    official_models.import_official(args.official)
    import models.var as official_var
    torch.set_num_threads(2)
    models_dir = pathlib.Path(args.models)
    vae = official_models.build_vqvae(test_mode=True)
    vae.load_state_dict(torch.load(models_dir / "vae.pth", map_location="cpu"))
    var = official_models.build_var(vae, args.depth, cond_drop_rate=0.0)
    var.load_state_dict(torch.load(models_dir / f"var_{args.depth}.pth", map_location="cpu"))
    var.eval()
    pn = list(official_models.VQVAE_CONFIG["patch_nums"])
    K = len(pn)
    out = {}
    te_img, _ = fmnist_data.load_split(args.data, "test")
    x = torch.from_numpy(fmnist_data.to_tokenizer_input(te_img[TEST_IMAGES]))
    label_B = torch.tensor(LABELS)
    out["label_B"] = label_B
    min_gap = float("inf")
    with torch.no_grad():
        gt = vae.img_to_idxBl(x)
        for s in range(K):
            out[f"gt_idx_s{s}"] = gt[s]
        x_BLCv = vae.quantize.idxBl_to_var_input(gt)
        out["x_BLCv"] = x_BLCv
        out["logits_BLV"] = var(label_B, x_BLCv)
        hs = [vae.quantize.embedding(g).transpose(1, 2).reshape(len(LABELS), -1, p, p) for g, p in zip(gt, pn)]
        for s, f in enumerate(vae.quantize.embed_to_fhat(hs, all_to_max_scale=True, last_one=False)):
            out[f"fhat_s{s}"] = f
        out["dec_img"] = vae.idxBl_to_img(gt, same_shape=True, last_one=True)
        # greedy generation, recording what the sampler and the decoder are handed
        real_sample = official_var.sample_with_top_k_top_p_
        for tag, cfg in CFGS.items():
            rec = {"logits": [], "fhat": None}

            def sampler(logits, **kw):
                rec["logits"].append(logits.clone())
                top2 = logits.topk(2, dim=-1).values
                nonlocal min_gap
                min_gap = min(min_gap, (top2[..., 0] - top2[..., 1]).min().item())
                return real_sample(logits, **kw)

            real_fhat_to_img = vae.fhat_to_img

            def fhat_to_img(f_hat):
                rec["fhat"] = f_hat.clone()
                return real_fhat_to_img(f_hat)

            official_var.sample_with_top_k_top_p_ = sampler
            vae.fhat_to_img = fhat_to_img
            img = var.autoregressive_infer_cfg(len(LABELS), label_B, g_seed=0, cfg=cfg, top_k=1, top_p=0.0,
                                               more_smooth=False)
            official_var.sample_with_top_k_top_p_ = real_sample
            vae.fhat_to_img = real_fhat_to_img
            tokens = [l.argmax(-1) for l in rec["logits"]]
            for s in range(K):
                out[f"gen_{tag}_idx_s{s}"] = tokens[s]
                out[f"gen_{tag}_logits_s{s}"] = rec["logits"][s]
            out[f"gen_{tag}_fhat"] = rec["fhat"]
            out[f"gen_{tag}_img"] = img
        # the encoder on real test images whose nearest-codeword decisions all
        # win by at least 1e-3 (a port's rounding cannot flip them)
        cand = torch.from_numpy(fmnist_data.to_tokenizer_input(te_img[10:210]))
        gaps = vq_gaps(vae, cand)
        enc_images = [10 + i for i in range(len(cand)) if gaps[i] >= 1e-3][:4]
        vq_min_gap = float(gaps[[i - 10 for i in enc_images]].min())
        x_enc = torch.from_numpy(fmnist_data.to_tokenizer_input(te_img[enc_images]))
        out["enc_img_in"] = x_enc
        out["enc_f"] = vae.quant_conv(vae.encoder(x_enc))
        for s, idx in enumerate(vae.img_to_idxBl(x_enc)):
            out[f"enc_idx_s{s}"] = idx
        out["enc_rec_img"] = vae.img_to_reconstructed_img(x_enc, last_one=True)
    out = {k: (v.to(torch.int64) if not v.is_floating_point() else v.float()) for k, v in out.items()}
    c_var = official_models.VAR_CONFIGS[args.depth]
    c_vae = official_models.VQVAE_CONFIG
    config = {
        "case": "fmnist",
        "about": f"the built-in trained model (VAR {args.depth}, Fashion-MNIST) run by the official code, "
                 f"torch {torch.__version__}, CPU, float32",
        "checkpoints": {"var": f"models/fmnist/var_{args.depth}.pth", "vae": "models/fmnist/vae.pth"},
        "var": {"depth": c_var["depth"], "embed_dim": c_var["embed_dim"], "num_heads": c_var["num_heads"],
                "head_dim": c_var["embed_dim"] // c_var["num_heads"], "mlp_hidden": 4 * c_var["embed_dim"],
                "num_classes": official_models.NUM_CLASSES, "patch_nums": pn, "shared_aln": False,
                "Cvae": c_vae["z_channels"], "vocab_size": c_vae["vocab_size"]},
        "vqvae": {"ch": c_vae["ch"], "ch_mult": list(c_vae["ch_mult"]), "num_res_blocks": c_vae["num_res_blocks"],
                  "share_quant_resi": 4, "vocab_size": c_vae["vocab_size"], "z_channels": c_vae["z_channels"]},
        "inputs": {"B": len(LABELS), "label_B": LABELS, "cfg_tags": CFGS,
                   "teacher_forcing_images": f"test split {TEST_IMAGES}, encoded", "encoder_images": f"test split {enc_images}"},
        "greedy_min_logit_gap": min_gap,
        "encoder_min_vq_distance_gap": vq_min_gap,
    }
    if min_gap < 1e-3 or len(enc_images) < 4:
        raise SystemExit(f"greedy gap {min_gap:.3g} or encoder images {enc_images}: a port's rounding could flip a "
                         "decision; choose other LABELS / images")
    dst = pathlib.Path(args.out)
    dst.mkdir(parents=True, exist_ok=True)
    write_safetensors(dst / "golden.safetensors", out)
    (dst / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {dst}: {len(out)} tensors; smallest greedy top-1/top-2 gap {min_gap:.3g}")


if __name__ == "__main__":
    main()
