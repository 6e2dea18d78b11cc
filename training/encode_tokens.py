"""Stage 2: the finished tokenizer's token maps of every training image (and
of its mirror image, which is as much a garment) and of the test split, with
VAR's teacher-forcing input, so the transformer stages never run the encoder."""
import torch
import torch.nn.functional as F

import fmnist_data
import official_models


def load_trained_vqvae(work):
    vae = official_models.build_vqvae(test_mode=True)
    st = torch.load(work / "vqvae.state", map_location="cpu", weights_only=False)
    vae.load_state_dict(st["modules"]["vae"])
    return vae


@torch.no_grad()
def encode(vae, x, batch=500):
    maps = []
    for i in range(0, len(x), batch):
        maps.append(torch.cat(vae.img_to_idxBl(x[i:i + batch]), dim=1))
    return torch.cat(maps).to(torch.int16)


@torch.no_grad()
def reconstruction_psnr(vae, x, batch=500):
    err = 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        rec = vae.img_to_reconstructed_img(xb, last_one=True)
        err += F.mse_loss(rec, xb, reduction="sum").item()
    mse = err / x.numel()
    return 10 * torch.log10(torch.tensor(4.0 / mse)).item()  # the range [-1, 1] spans 2


def token_maps(vae, data_root):
    """The token maps of every training image and of its mirror image, with
    their labels, and of the test split; and the test split's tokenizer input."""
    tr_img, tr_lab = fmnist_data.load_split(data_root, "train")
    te_img, te_lab = fmnist_data.load_split(data_root, "test")
    x_tr = torch.from_numpy(fmnist_data.to_tokenizer_input(tr_img))
    x_te = torch.from_numpy(fmnist_data.to_tokenizer_input(te_img))
    maps = {"train_maps": torch.cat([encode(vae, x_tr), encode(vae, torch.flip(x_tr, dims=[3]))]),
            "train_labels": torch.cat([torch.from_numpy(tr_lab)] * 2),
            "test_maps": encode(vae, x_te), "test_labels": torch.from_numpy(te_lab)}
    return maps, x_te


def run(args, work):
    out = work / "tokens.pt"
    if out.exists():
        return True
    vae = load_trained_vqvae(work)
    maps, x_te = token_maps(vae, args.data)
    psnr = reconstruction_psnr(vae, x_te)
    print(f"tokens: {len(maps['train_maps'])} training maps, {len(maps['test_maps'])} test maps; test "
          f"reconstruction PSNR {psnr:.2f} dB", flush=True)
    torch.save(dict(maps, test_psnr=psnr), out)
    return True
