#!/usr/bin/env python3
"""Reference outputs of the trained ParScale adapters, in the layout of the
golden cases (tests/data/golden/<case>): for every adapter, the aggregated
teacher-forced logits and the aggregation weights of the PyTorch forward that
trained it (training/parscale.py: the official VAR with the prefix and the
aggregation put in), on the token maps of real test images. The checkpoints
and adapters are not copied: config.json names them.

  python training/make_golden_parscale.py --official /tmp/var-official
"""
import argparse
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fmnist_data  # noqa: E402
import official_models  # noqa: E402
import parscale  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402
from train_parscale import load_backbone  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABELS = [7, 0, 9, 10]           # sneaker, T-shirt, ankle boot, unconditional
TEST_IMAGES = [0, 1, 2, 3]       # test-split images behind the teacher-forcing inputs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True)
    ap.add_argument("--models", type=pathlib.Path, default=ROOT / "models" / "fmnist")
    ap.add_argument("--depth", default="d4", choices=sorted(official_models.VAR_CONFIGS))
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--data", default=fmnist_data.DEFAULT_ROOT)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "data" / "golden" / "fmnist-parscale")
    args = ap.parse_args()
    official_models.import_official(args.official)
    torch.set_num_threads(2)
    vae, var = load_backbone(args.models, args.depth)
    te_img, _ = fmnist_data.load_split(args.data, "test")
    x = torch.from_numpy(fmnist_data.to_tokenizer_input(te_img[TEST_IMAGES]))
    label_B = torch.tensor(LABELS)
    out = {"label_B": label_B}
    adapters, meta = {}, None
    with torch.no_grad():
        gt = vae.img_to_idxBl(x)
        for s, g in enumerate(gt):
            out[f"gt_idx_s{s}"] = g
        x_BLCv = vae.quantize.idxBl_to_var_input(gt)
        out["x_BLCv"] = x_BLCv
        for P in [int(p) for p in args.streams.split(",")]:
            rel = pathlib.Path("models") / "fmnist" / f"parscale_{args.depth}_p{P}.safetensors"
            path = args.models / rel.name
            adapter = parscale.load_adapter(var, path)
            this = {"T": adapter.prefix_tokens, "smooth": adapter.smooth}
            if meta not in (None, this):
                raise SystemExit(f"{path}: T and s differ from the other adapters ({this} vs {meta})")
            meta = this
            weights = []
            out[f"ps{P}_logits_BLV"] = parscale.teacher_forced_logits(var, adapter, label_B, x_BLCv, weights)
            out[f"ps{P}_w_BLP"] = weights[0]
            adapters[str(P)] = str(rel)
    out = {k: (v.to(torch.int64) if not v.is_floating_point() else v.float()) for k, v in out.items()}
    c_var = official_models.VAR_CONFIGS[args.depth]
    config = {
        "case": "fmnist-parscale",
        "about": f"trained ParScale adapters on the built-in VAR {args.depth} (Fashion-MNIST), teacher forcing through "
                 f"training/parscale.py (the official VAR with prefix and aggregation), torch {torch.__version__}, "
                 "CPU, float32",
        "checkpoints": {"var": f"models/fmnist/var_{args.depth}.pth", "vae": "models/fmnist/vae.pth"},
        "adapters": adapters,
        "var": {"depth": c_var["depth"], "embed_dim": c_var["embed_dim"], "num_heads": c_var["num_heads"],
                "num_classes": official_models.NUM_CLASSES,
                "patch_nums": list(official_models.VQVAE_CONFIG["patch_nums"])},
        "parscale": meta,
        "inputs": {"B": len(LABELS), "label_B": LABELS,
                   "teacher_forcing_images": f"test split {TEST_IMAGES}, encoded"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.out / "golden.safetensors", out)
    (args.out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {args.out}: {len(out)} tensors for P = {', '.join(adapters)}")


if __name__ == "__main__":
    main()
