"""Writes mask_resize.json: PyTorch's bilinear resizing (align_corners=False)
of a grey mask image, the reference for varps's mask resizing.

The mask image is 32x32 with grey level u = (7*y + 13*x) % 256; its keep
mask is 1 - u/255 (float32), resized to 8x8 as the edit command resizes a
mask image to the last token map, then to each scale of 1,2,3,4,5,6,8.
Run with the PyTorch the golden data came from (torch 1.13, CPU):
    python3 make_mask_reference.py > mask_resize.json
"""
import json

import numpy as np
import torch
import torch.nn.functional as F


def resize(plane, side):
    t = torch.tensor(plane)[None, None]
    return F.interpolate(t, size=(side, side), mode='bilinear', align_corners=False)[0, 0].numpy()


y, x = np.meshgrid(np.arange(32), np.arange(32), indexing='ij')
u = ((7 * y + 13 * x) % 256).astype(np.float32)
keep = (np.float32(1) - u / np.float32(255)).astype(np.float32)
last = resize(keep, 8)
out = {'torch': torch.__version__, 'image_side': 32, 'token_side': 8,
       'keep_8x8': [float(v) for v in last.reshape(-1)], 'scales': {}}
for pn in (1, 2, 3, 4, 5, 6, 8):
    out['scales'][str(pn)] = [float(v) for v in resize(last, pn).reshape(-1)]
print(json.dumps(out))
