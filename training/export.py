"""Stage 6: the finished weights as the official code writes them
(`torch.save(model.state_dict())`), the classifier as safetensors (read by
scripts/quality.py and varps), and a manifest of how they were made."""
import hashlib
import json
import pathlib

import torch

import fmnist_data
import official_models
import train_classifier
import train_var
from encode_tokens import load_trained_vqvae


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def run(args, work):
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_trained_vqvae(work)
    torch.save(vae.state_dict(), out / "vae.pth")
    manifest = {"data": "Fashion-MNIST (Debian dataset-fashion-mnist), 60,000 training images; test split held out",
                "seed": args.seed, "tokenizer": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in official_models.VQVAE_CONFIG.items()},
                "image": "28x28 grey padded to 32x32, replicated to RGB, [-1, 1]",
                "files": {}}
    tokens = torch.load(work / "tokens.pt", map_location="cpu", weights_only=False)
    manifest["tokenizer"]["test_reconstruction_psnr_db"] = round(tokens["test_psnr"], 3)
    for name in official_models.VAR_CONFIGS:
        var = official_models.build_var(vae, name, cond_drop_rate=0.0)
        st = torch.load(work / f"var-{name}.state", map_location="cpu", weights_only=False)
        var.load_state_dict(st["modules"]["var"])
        torch.save(var.state_dict(), out / f"var_{name}.pth")
        manifest[f"var_{name}"] = dict(official_models.VAR_CONFIGS[name], num_classes=official_models.NUM_CLASSES,
                                        steps=st["step"], batch=train_var.BATCH)
    clf = train_classifier.Classifier()
    st = torch.load(work / "classifier.state", map_location="cpu", weights_only=False)
    clf.load_state_dict(st["modules"]["classifier"])
    from safetensors_io import write_safetensors
    write_safetensors(out / "classifier.safetensors", clf.state_dict(),
                      {"input_mean": repr(fmnist_data.CLASSIFIER_MEAN), "input_std": repr(fmnist_data.CLASSIFIER_STD)})
    te_img, te_lab = fmnist_data.load_split(args.data, "test")
    manifest["classifier"] = {"test_accuracy": round(train_classifier.accuracy(
        clf, train_classifier.classifier_input(te_img), torch.from_numpy(te_lab)), 4)}
    for f in sorted(out.iterdir()):
        if f.suffix in (".pth", ".safetensors"):
            manifest["files"][f.name] = {"bytes": f.stat().st_size, "sha256": sha256(f)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"exported to {out}: " + ", ".join(manifest["files"]), flush=True)
    return True
