"""The safetensors subset varps reads and writes (F32 and I64 tensors, string
metadata), without the safetensors package."""
import json
import os

import numpy as np
import torch


def write_safetensors(path, tensors, metadata=None):
    """safetensors as varps reads it: u64 LE header length, JSON header padded
    with spaces to 8 bytes, raw little-endian data."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        a = t.detach().cpu().contiguous().numpy()
        dt = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file with F32/I64 tensors."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, d in header.items():
        dt = {"F32": np.float32, "I64": np.int64}[d["dtype"]]
        a, b = d["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).copy().reshape(d["shape"]))
    return out, meta
