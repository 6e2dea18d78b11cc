"""ParScale streams on the official VAR class (docs/spec/parscale.md).

P copies of every row run through one frozen backbone in one batch, stream-
major (row r = p·N + j). In each attention layer, stream p's learned prefix
of T keys and values sits in front of the row's own keys and values. After the
last block, a small network weighs the P head-normalised states of each token
into one, and the shared head turns it into logits.

The forward is the official `VAR.forward` on the P-fold batch, with two of its
pieces swapped for the length of a `with streams(...)` block: each block's
attention, so that the prefix is in front, and `get_logits`, so that the
aggregation comes first. Everything else (embeddings, AdaLN, the MLPs,
the mask) is the official code's, so these logits are the maths `varps`
runs with an adapter.
"""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors_io import read_safetensors


class StreamAdapter(nn.Module):
    """Per-stream prefixes for every block, and the aggregation network."""

    def __init__(self, depth, num_heads, head_dim, streams, prefix_tokens, smooth):
        super().__init__()
        C = num_heads * head_dim
        self.streams, self.prefix_tokens, self.smooth = streams, prefix_tokens, smooth
        shape = (depth, streams, num_heads, prefix_tokens, head_dim)
        self.prefix_k = nn.Parameter(torch.zeros(shape))
        self.prefix_v = nn.Parameter(torch.zeros(shape))
        self.aggregate = nn.Sequential(nn.Linear(streams * C, C), nn.SiLU(), nn.Linear(C, streams))
        # Uniform weights at the start: every stream counts 1/P.
        nn.init.zeros_(self.aggregate[2].weight)
        nn.init.zeros_(self.aggregate[2].bias)

    @classmethod
    def for_model(cls, var, streams, prefix_tokens, smooth):
        a = var.blocks[0].attn
        return cls(len(var.blocks), a.num_heads, a.head_dim, streams, prefix_tokens, smooth)

    def tensors(self):
        """The tensors of the adapter file, under the names varps reads."""
        out = {}
        for i in range(self.prefix_k.shape[0]):
            out[f"blocks.{i}.attn.prefix_k"] = self.prefix_k[i]
            out[f"blocks.{i}.attn.prefix_v"] = self.prefix_v[i]
        for n, t in self.aggregate.state_dict().items():
            out[f"aggregate.{n}"] = t
        return {k: v.detach().float().contiguous() for k, v in out.items()}

    def metadata(self):
        return {"parscale_n": str(self.streams), "parscale_n_tokens": str(self.prefix_tokens),
                "parscale_attn_smooth": repr(float(self.smooth))}


def _prefixed_attention(attn, prefix_k, prefix_v, streams, captured):
    """The block's attention with stream p's prefix in front of row r's own
    keys and values (p = r // rows-per-stream); the own keys are the official
    ones (L2-normalised, the query scaled by exp(min(scale_mul, log 100)))."""
    if not attn.attn_l2_norm:
        raise SystemExit("ParScale streams need a model with attn_l2_norm (the prefix keys enter unnormalised)")

    def forward(x, attn_bias):
        N, L, C = x.shape
        H, hd = attn.num_heads, attn.head_dim
        bias = torch.cat((attn.q_bias, attn.zero_k_bias, attn.v_bias))
        q, k, v = F.linear(x, attn.mat_qkv.weight, bias).view(N, L, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)
        q = F.normalize(q, dim=-1)
        if captured is not None:
            captured.append((q.detach(), v.detach()))
        q = q.mul(attn.scale_mul_1H11.clamp_max(attn.max_scale_mul).exp())
        k = F.normalize(k, dim=-1)
        T = prefix_k.shape[2]
        if T > 0:
            rows = N // streams
            k = torch.cat((prefix_k.repeat_interleave(rows, dim=0), k), dim=2)
            v = torch.cat((prefix_v.repeat_interleave(rows, dim=0), v), dim=2)
            attn_bias = F.pad(attn_bias, (T, 0))  # every query sees every prefix position
        scores = (q * attn.scale) @ k.transpose(-2, -1) + attn_bias
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(N, L, C)
        return attn.proj_drop(attn.proj(out))

    return forward


def _aggregating_logits(var, adapter, weights_out):
    """`get_logits` of the P-fold batch: per token, the P streams' head-
    normalised states interleaved channel-major, weighed by
    softmax(aggregate(z))·(1−s) + s/P, summed, and handed to the head."""
    P, s = adapter.streams, adapter.smooth

    def get_logits(h, cond_BD):
        N, L, C = h.shape
        hs = var.head_nm(h.float(), cond_BD).float().view(P, N // P, L, C)
        z = hs.permute(1, 2, 3, 0).reshape(N // P, L, C * P)  # z[c·P + p] = h_p[c]
        w = adapter.aggregate(z).softmax(dim=-1) * (1 - s) + s / P
        if weights_out is not None:
            weights_out.append(w.detach())
        out = (hs * w.permute(2, 0, 1).unsqueeze(-1)).sum(dim=0)
        return var.head(out).float()

    return get_logits


@contextlib.contextmanager
def streams(var, adapter, weights_out=None, captured=None):
    """Inside the block, `var(label, x)` on a P-fold batch is the ParScale forward."""
    P = adapter.streams
    try:
        for i, blk in enumerate(var.blocks):
            blk.attn.forward = _prefixed_attention(blk.attn, adapter.prefix_k[i], adapter.prefix_v[i], P, captured)
        var.get_logits = _aggregating_logits(var, adapter, weights_out)
        yield
    finally:
        for blk in var.blocks:
            blk.attn.__dict__.pop("forward", None)
        var.__dict__.pop("get_logits", None)


def teacher_forced_logits(var, adapter, label_B, x_BLCv, weights_out=None):
    """Logits [B, L, V] of the aggregated streams for B images under teacher forcing."""
    if var.cond_drop_rate != 0:
        raise ValueError("build the backbone with cond_drop_rate 0; drop classes before the streams are made")
    P = adapter.streams
    with streams(var, adapter, weights_out):
        return var(label_B.repeat(P), x_BLCv.repeat(P, 1, 1))


@torch.no_grad()
def init_prefixes_from_model(var, adapter, label_B, x_BLCv, seed):
    """Where the prefixes start. An inserted prefix takes attention from the
    row's own keys, and the frozen backbone was never trained with it, so each
    prefix key starts pointing away from the block's mean query direction
    (with a norm of 3: little attention at first, yet enough gradient for
    Adam to move it) plus noise that differs per stream; each prefix value
    starts as a value the model computes at a random position of a real
    image, a different draw per stream."""
    captured = []
    plain = StreamAdapter.for_model(var, 1, 0, 0.0)
    with streams(var, plain, captured=captured):
        var(label_B, x_BLCv)
    g = torch.Generator().manual_seed(seed)
    B, L = x_BLCv.shape[0], x_BLCv.shape[1] + var.first_l
    T = adapter.prefix_tokens
    for i, (q, v) in enumerate(captured):  # [B, H, L, hd], q unit length
        away = -3.0 * F.normalize(q.mean(dim=(0, 2)), dim=-1)  # [H, hd]
        for p in range(adapter.streams):
            noise = torch.randn(adapter.prefix_k.shape[2:], generator=g)
            adapter.prefix_k[i, p] = away[:, None, :] + 0.1 * noise
            rows = torch.randint(0, B, (T,), generator=g)
            pos = torch.randint(0, L, (T,), generator=g)
            adapter.prefix_v[i, p] = v[rows, :, pos].transpose(0, 1)


def load_adapter(var, path):
    tensors, meta = read_safetensors(path)
    adapter = StreamAdapter.for_model(var, int(meta["parscale_n"]), int(meta["parscale_n_tokens"]),
                                      float(meta["parscale_attn_smooth"]))
    with torch.no_grad():
        for i in range(adapter.prefix_k.shape[0]):
            adapter.prefix_k[i] = tensors[f"blocks.{i}.attn.prefix_k"]
            adapter.prefix_v[i] = tensors[f"blocks.{i}.attn.prefix_v"]
        adapter.aggregate.load_state_dict({n[len("aggregate."):]: t for n, t in tensors.items()
                                           if n.startswith("aggregate.")})
    return adapter
