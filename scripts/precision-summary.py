#!/usr/bin/env python3
"""The table docs/tolerances.md gives for the reduced CPU precisions, from scripts/precision-tables.sh's runs.

usage: scripts/precision-summary.py DIR

DIR holds d16-{bf16,int8}-{default,greedy}/precision-error.json (`varps precision-error` on d16 random
weights with the default sampling and greedy). Per scale and precision: the teacher-forced logits'
normalised error, KL divergence and top-1 agreement of the default-sampling run, and the free-running
token agreement of both runs; then the images' PSNR against fp32's: fp32's tokens decoded in each
precision (the decoder's own error) and the images each precision samples on its own.
"""
import json
import math
import sys
from pathlib import Path

PRECISIONS = ('bf16', 'int8')


def load(root, precision, sampling):
    path = root / f'd16-{precision}-{sampling}' / 'precision-error.json'
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f'precision-summary: {path}: {e}')


def psnr(value):
    v = float(value)
    return 'identical' if math.isinf(v) else f'{v:.1f} dB'


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    root = Path(sys.argv[1])
    runs = {(p, s): load(root, p, s) for p in PRECISIONS for s in ('default', 'greedy')}
    head = '| scale | side |'
    rule = '| ---: | ---: |'
    for p in PRECISIONS:
        head += (f' {p}: logits error | KL, nats | top-1 | tokens agreeing, sampled / greedy |')
        rule += ' ---: | ---: | ---: | ---: |'
    print(head)
    print(rule)
    scales = runs[(PRECISIONS[0], 'default')]['scales']
    for i, scale in enumerate(scales):
        row = f'| {i + 1} | {scale["side"]} |'
        for p in PRECISIONS:
            d, g = runs[(p, 'default')]['scales'][i], runs[(p, 'greedy')]['scales'][i]
            row += (f' {d["logits_error"]:.2e} | {d["kl"]:.1e} | {100 * d["top1_agreement"]:.1f} % |'
                    f' {100 * d["token_agreement"]:.0f} % / {100 * g["token_agreement"]:.1f} % |')
        print(row)
    row = '| all |  |'
    for p in PRECISIONS:
        d, g = runs[(p, 'default')], runs[(p, 'greedy')]
        row += f' {d["logits_error"]:.2e} |  |  | {100 * d["token_agreement"]:.0f} % / {100 * g["token_agreement"]:.1f} % |'
    print(row)
    print()
    images = runs[(PRECISIONS[0], 'default')]['images']
    parts = []
    for p in PRECISIONS:
        d, g = runs[(p, 'default')], runs[(p, 'greedy')]
        parts.append(f'{p}: fp32\'s tokens decoded {psnr(d["decoded_psnr_db"])}; its own images '
                     f'{psnr(d["psnr_db"])} sampled, {psnr(g["psnr_db"])} greedy')
    print(f'PSNR against fp32\'s images ({images} images): ' + '; '.join(parts) + '.')


if __name__ == '__main__':
    main()
