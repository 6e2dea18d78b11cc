"""The official VAR classes at the small Fashion-MNIST configurations.

The official tree is imported from the folder given on the command line
(nothing of it lives in this repository). `build_vae_var` switches PyTorch's
parameter initialisation off and fixes the tokenizer's channel multipliers,
so the classes are constructed here instead.
"""
import os
import sys
import types

# The tokenizer: 32x32 RGB in, three halvings to a 4x4 latent.
VQVAE_CONFIG = dict(vocab_size=512, z_channels=16, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=1,
                    patch_nums=(1, 2, 3, 4))
# Two depths of one width: the smaller is the baseline and CoDe's refiner.
VAR_CONFIGS = {
    "d4": dict(depth=4, embed_dim=128, num_heads=4),
    "d8": dict(depth=8, embed_dim=128, num_heads=4),
}
NUM_CLASSES = 10


def import_official(tree):
    tree = os.path.abspath(tree)
    if not os.path.isfile(os.path.join(tree, "models", "var.py")):
        raise SystemExit(f"{tree}: not the official VAR tree (no models/var.py); extract the peer tarball "
                         "and pass its folder")
    if tree not in sys.path:
        sys.path.insert(0, tree)
    # VAR's Hugging Face mixin only adds hub download methods; training needs none.
    sys.modules.setdefault("huggingface_hub", types.SimpleNamespace(PyTorchModelHubMixin=object))
    import models  # noqa: F401  (the official package)
    return tree


def one_process_group():
    """The quantizer's training forward asks torch.distributed for the world size."""
    import torch.distributed as tdist
    if not tdist.is_initialized():
        tdist.init_process_group("gloo", store=tdist.HashStore(), rank=0, world_size=1)


def build_vqvae(test_mode):
    from models.basic_vae import Decoder, Encoder
    from models.vqvae import VQVAE
    c = VQVAE_CONFIG
    vae = VQVAE(vocab_size=c["vocab_size"], z_channels=c["z_channels"], ch=c["ch"], test_mode=False,
                share_quant_resi=4, v_patch_nums=c["patch_nums"])
    dd = dict(dropout=0.0, ch=c["ch"], z_channels=c["z_channels"], in_channels=3, ch_mult=c["ch_mult"],
              num_res_blocks=c["num_res_blocks"], using_sa=True, using_mid_sa=True)
    vae.encoder = Encoder(double_z=False, **dd)
    vae.decoder = Decoder(**dd)
    vae.downsample = 2 ** (len(c["ch_mult"]) - 1)
    if test_mode:
        vae.eval()
        for p in vae.parameters():
            p.requires_grad_(False)
    return vae


def build_var(vae, name, cond_drop_rate=0.1):
    from models.var import VAR
    c = VAR_CONFIGS[name]
    var = VAR(vae_local=vae, num_classes=NUM_CLASSES, depth=c["depth"], embed_dim=c["embed_dim"],
              num_heads=c["num_heads"], mlp_ratio=4.0, drop_rate=0.0, attn_drop_rate=0.0,
              drop_path_rate=0.0, norm_eps=1e-6, shared_aln=False, cond_drop_rate=cond_drop_rate,
              attn_l2_norm=True, patch_nums=VQVAE_CONFIG["patch_nums"], flash_if_available=False,
              fused_if_available=False)
    var.init_weights(init_adaln=0.5, init_adaln_gamma=1e-5, init_head=0.02, init_std=-1)
    return var
