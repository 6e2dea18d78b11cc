#!/usr/bin/env python3
"""The error bf16 operands give one 3×3 convolution, computed directly and as Winograd F(4×4, 3×3).

usage: scripts/winograd-bf16-error.py [--channels 64] [--side 32] [--seed 0]

A random convolution (inputs N(0, 1), weights N(0, 1/(9·C))) is summed in double three ways: directly
with its inputs and weights rounded to bf16 (what PyTorch's bf16 autocast and varps's large direct
convolutions do), and as Winograd F(4×4, 3×3) with the transformed inputs and weights rounded to
float32 (varps's float32 path) or to bf16. Each is printed as ‖got − exact‖ / ‖exact‖ against the
exact convolution in double. It is why varps keeps its Winograd convolutions float32 in every
precision (docs/tolerances.md). Needs numpy only.
"""
import argparse

import numpy as np

# Lavin & Gray's F(4×4, 3×3) matrices: Bᵀ (input), G (filter), Aᵀ (output).
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)


def bf16(a):
    """Rounded to bf16 (to nearest, ties to even), held as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff0000
    return bits.astype(np.uint32).view(np.float32)


def direct(x, w):
    side = x.shape[1]
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], side, side))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum('oc,chw->ohw', w[:, :, ky, kx].astype(np.float64), xp[:, ky:ky + side, kx:kx + side])
    return out


def winograd(x, w, operand):
    side = x.shape[1]
    u = operand(np.einsum('ij,ocjk,lk->ocil', G, w.astype(np.float64), G))
    xp = np.pad(x, ((0, 0), (1, 3), (1, 3)))
    out = np.zeros((w.shape[0], side, side))
    for ty in range(side // 4):
        for tx in range(side // 4):
            d = xp[:, 4 * ty:4 * ty + 6, 4 * tx:4 * tx + 6].astype(np.float64)
            v = operand(np.einsum('ij,cjk,lk->cil', BT, d, BT))
            m = np.einsum('ocil,cil->oil', u.astype(np.float64), v.astype(np.float64))
            out[:, 4 * ty:4 * ty + 4, 4 * tx:4 * tx + 4] = np.einsum('ij,ojk,lk->oil', AT, m, AT)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--channels', type=int, default=64)
    ap.add_argument('--side', type=int, default=32, help='a multiple of 4')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if a.side % 4 or a.side <= 0 or a.channels <= 0:
        ap.error('--side must be a positive multiple of 4 and --channels positive')
    rng = np.random.default_rng(a.seed)
    x = rng.standard_normal((a.channels, a.side, a.side)).astype(np.float32)
    w = (rng.standard_normal((a.channels, a.channels, 3, 3)) / np.sqrt(9 * a.channels)).astype(np.float32)
    exact = direct(x, w)

    def error(got):
        return np.linalg.norm(got - exact) / np.linalg.norm(exact)

    print(f'{a.channels} channels, {a.side}x{a.side}, seed {a.seed}: error relative to the exact convolution')
    print(f'direct, bf16 operands                  {error(direct(bf16(x), bf16(w))):.2e}')
    print(f'Winograd F(4x4, 3x3), float32 operands {error(winograd(x, w, lambda t: t.astype(np.float32))):.2e}')
    print(f'Winograd F(4x4, 3x3), bf16 operands    {error(winograd(x, w, bf16)):.2e}')


if __name__ == '__main__':
    main()
