"""Fashion-MNIST as Debian's dataset-fashion-mnist ships it (IDX files, gzip).

Images are 28x28 grey; the tokenizer sees them padded to 32x32 (2 pixels of
black each side), replicated to RGB and scaled to [-1, 1].
"""
import gzip
import os
import struct

import numpy as np

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IMAGE_SIDE = 32
# The classifier's input standardisation: the training images' grey mean and
# standard deviation (rounded). export.py writes them into
# classifier.safetensors, which is where varps and scripts/quality.py read them.
CLASSIFIER_MEAN, CLASSIFIER_STD = 0.2860, 0.3530


def _read_idx(path):
    if not os.path.exists(path):
        raise SystemExit(f"{path}: missing (install Debian's dataset-fashion-mnist, or pass --data DIR)")
    with gzip.open(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        ndim = magic & 0xFF
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: truncated IDX file ({data.size} bytes of data, header says {dims})")
    return data.reshape(dims)


def load_split(root, split):
    """uint8 images [N, 28, 28] and int64 labels [N] of split 'train' or 'test'."""
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return images, labels


def padded_grey01(images_u8):
    """uint8 [N, 28, 28] -> float32 [N, 32, 32] in [0, 1], 2 pixels of black each side."""
    x = np.zeros((images_u8.shape[0], IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    x[:, 2:30, 2:30] = images_u8.astype(np.float32) / 255.0
    return x


def to_tokenizer_input(images_u8):
    """uint8 [N, 28, 28] -> float32 [N, 3, 32, 32] in [-1, 1]."""
    x = padded_grey01(images_u8) * 2.0 - 1.0
    return np.repeat(x[:, None], 3, axis=1)


def to_classifier_input(images01_gray32):
    """float [N, 32, 32] grey in [0, 1] -> float32 [N, 1, 32, 32] standardised as in training."""
    return ((images01_gray32 - CLASSIFIER_MEAN) / CLASSIFIER_STD).astype(np.float32)[:, None]
