#!/usr/bin/env python3
"""Seed corpora for the fuzz targets of tests/fuzz (docs/fuzzing.md).

Writes OUT/<target>/<seed> for every target: inputs derived from the test
data (the pickles of the .pth checkpoints, the safetensors headers with
their tensors shrunk, the adapters, the JSON files), small valid inputs of
each format built here, and the hostile inputs the readers' bounds were made
for (a PNG chunk declaring 1.6 GB, an 18000x18000 PNG, a compressed .pth
whose pickle calls _rebuild_tensor_v2 two million times, an adapter whose
declared sizes overflow, ...). Only the standard library; nothing is
downloaded.

usage: make_corpus.py OUT
"""
import io
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"

# The separator of fuzz_torch_zip's record lists (kRecordSeparator there).
RECORD_SEPARATOR = b"\n#REC#\n"
# Seeds derived from the test data are kept only up to this size: libFuzzer
# runs several times slower on inputs of tens of KB, and the larger files
# (the VQVAE checkpoints) repeat the structure of the smaller ones.
MAX_DERIVED = 12 * 1024


# ---------------------------------------------------------------- pickles
# The opcodes torch.save writes for a state dict (protocol 2), as
# tests/unit/test_files.hpp's PickleWriter writes them.

class Pickle:
    def __init__(self):
        self.b = bytearray()

    def raw(self, data):
        self.b += data
        return self

    def proto(self):
        return self.raw(b"\x80\x02")

    def mark(self):
        return self.raw(b"(")

    def glob(self, module, name):
        return self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def str(self, s):
        s = s.encode()
        return self.raw(b"X" + struct.pack("<I", len(s)) + s)

    def long1(self, v):
        return self.raw(b"\x8a\x08" + struct.pack("<q", v))

    def int_tuple(self, values):
        self.mark()
        for v in values:
            self.long1(v)
        return self.raw(b"t")

    def ordered_dict(self):
        return self.glob("collections", "OrderedDict").raw(b")R")

    def tensor(self, storage_type, key, numel, offset, sizes, strides, parameter=False):
        if parameter:
            self.glob("torch._utils", "_rebuild_parameter").mark()
        self.glob("torch._utils", "_rebuild_tensor_v2").mark()
        self.mark().str("storage").glob("torch", storage_type).str(key).str("cpu").long1(numel).raw(b"t")
        self.raw(b"Q")  # BINPERSID
        self.long1(offset).int_tuple(sizes).int_tuple(strides).raw(b"\x89").ordered_dict()
        self.raw(b"tR")
        if parameter:
            self.raw(b"\x89").ordered_dict().raw(b"tR")
        return self


def contiguous(sizes):
    strides, n = [], 1
    for s in reversed(sizes):
        strides.insert(0, n)
        n *= s
    return strides


def state_dict_pickle(tensors, metadata=True):
    """tensors: (name, storage_type, key, numel, offset, sizes, strides, parameter)."""
    p = Pickle().proto().ordered_dict().mark()
    for name, *spec in tensors:
        p.str(name).tensor(*spec)
    p.raw(b"u")  # SETITEMS
    if metadata:
        # torch's `_metadata` attribute, handed to BUILD
        p.raw(b"}").str("_metadata").ordered_dict().mark().str("").raw(b"}").str("version").long1(1).raw(b"s")
        p.raw(b"u").raw(b"s").raw(b"b")
    return bytes(p.raw(b".").b)


def amplifying_pickle(calls, rank):
    """_rebuild_tensor_v2 called `calls` times on one memoised argument tuple."""
    p = Pickle().proto().glob("torch._utils", "_rebuild_tensor_v2").raw(b"q\x00")
    p.mark().mark().str("storage").glob("torch", "FloatStorage").str("0").str("cpu").long1(1).raw(b"tQ")
    p.long1(0).int_tuple([1] * rank).int_tuple([1] * rank).raw(b"\x89").ordered_dict().raw(b"tq\x01R")
    p.raw(b"h\x00h\x01R" * (calls - 1))
    return bytes(p.ordered_dict().raw(b".").b)


SIZES = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
         "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1}


def small_state_dicts():
    """(name, tensors, storages): small state dicts torch.save could write."""
    out = []
    out.append(("one_f32", [("w", "FloatStorage", "0", 6, 0, [2, 3], [3, 1], False)],
                {"0": struct.pack("<6f", *range(6))}))
    out.append(("views", [("w", "FloatStorage", "0", 12, 0, [3, 4], [4, 1], True),
                          ("w_t", "FloatStorage", "0", 12, 0, [4, 3], [1, 4], False),
                          ("row", "FloatStorage", "0", 12, 4, [4], [1], False),
                          ("scalar", "FloatStorage", "0", 12, 11, [], [], False)],
                {"0": struct.pack("<12f", *range(12))}))
    dtypes = []
    storages = {}
    for i, (st, size) in enumerate(SIZES.items()):
        dtypes.append((st.replace("Storage", "").lower(), st, str(i), 4, 0, [2, 2], [2, 1], False))
        storages[str(i)] = bytes(range(4 * size))
    out.append(("dtypes", dtypes, storages))
    out.append(("empty", [("e", "FloatStorage", "0", 0, 0, [0, 4], [4, 1], False),
                          ("lvl", "LongStorage", "1", 3, 0, [1, 3], [3, 1], False)],
                {"0": b"", "1": struct.pack("<3q", 0, 1, 2)}))
    out.append(("no_tensors", [], {}))
    return out


def real_pickles():
    """The data.pkl of every .pth in the test data, with its archive."""
    for pth in sorted(DATA.rglob("*.pth")):
        with zipfile.ZipFile(pth) as z:
            names = z.namelist()
            pkl = next(n for n in names if n.endswith("/data.pkl"))
            yield pth, z, names, pkl, z.read(pkl)


# ---------------------------------------------------------------- zips

def zip_bytes(records, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in records:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=compression, compresslevel=9)
    return buf.getvalue()


def record_list(records):
    """fuzz_torch_zip's record-list form of an archive."""
    return RECORD_SEPARATOR.join(name.encode() + b"\n" + data for name, data in records)


def archive(stem, pickle, storages, extra=()):
    records = [(stem + "/data.pkl", pickle)]
    records += [(stem + "/data/" + k, v) for k, v in storages.items()]
    records += [(stem + "/" + k, v) for k, v in extra]
    return records


# ---------------------------------------------------------------- safetensors

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None):
    """tensors: (name, dtype, shape, data or None for zeros)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        data = (data or b"")[:n].ljust(n, b"\0")
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        blobs.append(data)
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", None)
    tensors = []
    for name, t in header.items():
        b, e = t["data_offsets"]
        tensors.append((name, t["dtype"], t["shape"], raw[8 + n + b:8 + n + e]))
    return tensors, metadata


def shrunk(path):
    """The file's header (names, dtypes, ranks, metadata) with every dimension
    at most 2, so the seed is a few KB."""
    tensors, metadata = read_safetensors(path)
    return safetensors([(n, d, [min(s, 2) for s in shape], data) for n, d, shape, data in tensors], metadata)


def narrow_adapter(path):
    """The adapter's depth, P, T, smoothing and first values, with one head of
    one channel (C = 1): a valid adapter of a few hundred bytes."""
    tensors, metadata = read_safetensors(path)
    depth = sum(1 for name, *_ in tensors if name.endswith(".prefix_k"))
    P, T = int(metadata["parscale_n"]), int(metadata["parscale_n_tokens"])
    data = {name: blob for name, _, _, blob in tensors}
    return adapter(depth, P, 1, T, 1, metadata, data=data)


def adapter(depth, P, H, T, hd, metadata=None, prefix_shape=None, data=None):
    C = H * hd
    tensors = []
    for b in range(depth):
        for kv in "kv":
            tensors.append((f"blocks.{b}.attn.prefix_{kv}", "F32", prefix_shape or [P, H, T, hd], None))
    tensors += [("aggregate.0.weight", "F32", [C, P * C], None), ("aggregate.0.bias", "F32", [C], None),
                ("aggregate.2.weight", "F32", [P, C], None), ("aggregate.2.bias", "F32", [P], None)]
    tensors = [(name, dtype, shape, (data or {}).get(name)) for name, dtype, shape, _ in tensors]
    meta = {"parscale_n": str(P), "parscale_n_tokens": str(T), "parscale_attn_smooth": "0.01"}
    meta.update(metadata or {})
    return safetensors(tensors, meta)


# ---------------------------------------------------------------- PNG

def chunk(kind, data):
    kind = kind.encode()
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(w, h, depth=8, color=2, interlace=0):
    return b"\x89PNG\r\n\x1a\n" + chunk("IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace))


def png(w, h, depth, color, rows, extra=b"", plte=None, trns=None, filters=b"\0", idat_parts=1):
    """rows: raw scanlines without the filter byte (filter types cycle through `filters`)."""
    raw = b"".join(filters[i % len(filters):i % len(filters) + 1] + r for i, r in enumerate(rows))
    z = zlib.compress(raw, 9)
    out = ihdr(w, h, depth, color)
    if plte is not None:
        out += chunk("PLTE", plte)
    if trns is not None:
        out += chunk("tRNS", trns)
    out += extra
    step = -(-len(z) // idat_parts)
    for i in range(0, len(z), step):
        out += chunk("IDAT", z[i:i + step])
    return out + chunk("IEND", b"")


def grey_mask(side, box):
    """A mask image: white (generate) inside box = (y0, x0, y1, x1), black outside."""
    y0, x0, y1, x1 = box
    return [bytes(255 if y0 <= y < y1 and x0 <= x < x1 else 0 for x in range(side)) for y in range(side)]


def png_seeds():
    s = {}
    s["rgb8.png"] = png(3, 2, 8, 2, [bytes(range(9)), bytes(range(9, 18))])
    s["rgb8_filters.png"] = png(4, 5, 8, 2, [bytes(range(i, i + 12)) for i in range(5)], filters=b"\0\1\2\3\4")
    s["rgb16.png"] = png(2, 2, 16, 2, [bytes(range(12)), bytes(range(12, 24))])
    for depth in (1, 2, 4, 8, 16):
        s[f"grey{depth}.png"] = png(8, 2, depth, 0, [bytes([0x5a] * (depth * 8 // 8)), bytes([0xa5] * depth)])
    s["grey_alpha8.png"] = png(2, 2, 8, 4, [b"\x10\xff\x20\x80", b"\x30\x00\x40\x7f"])
    s["rgba8.png"] = png(2, 1, 8, 6, [b"\x01\x02\x03\xff\x04\x05\x06\x00"])
    s["palette2_trns.png"] = png(4, 2, 2, 3, [b"\x1b", b"\xe4"], plte=bytes(range(12)), trns=b"\x00\x80")
    s["grey_trns.png"] = png(2, 1, 8, 0, [b"\x00\x10"], trns=b"\x00\x10")
    text = (chunk("tEXt", b"varps:class\x00207") + chunk("zTXt", b"Comment\x00\x00" + zlib.compress(b"z" * 100)) +
            chunk("iTXt", b"varps:seed\x00\x00\x00en\x00\x001") +
            chunk("iTXt", b"Title\x00\x01\x00\x00\x00" + zlib.compress("compressed title".encode())))
    s["text.png"] = png(2, 2, 8, 2, [bytes(6), bytes(6)], extra=text)
    s["split_idat.png"] = png(16, 16, 8, 0, grey_mask(16, (4, 4, 12, 12)), idat_parts=3)
    # Hostile: a text chunk declaring ~1.6 GB in a 41-byte file (libpng
    # allocates a chunk's declared length before reading it).
    for kind in ("iTXt", "zTXt", "tEXt"):
        s[f"hostile_{kind}_1.6GB.png"] = ihdr(2, 1) + struct.pack(">I", 1600000000) + kind.encode()
    empty_idat = chunk("IDAT", b"\x78\x01\x01\x00\x00\xff\xff\x00\x00\x00\x01")
    s["hostile_18000x18000.png"] = ihdr(18000, 18000) + empty_idat + chunk("IEND", b"")
    s["hostile_8000x8000_empty_idat.png"] = ihdr(8000, 8000) + empty_idat + chunk("IEND", b"")
    return s


def mask_seeds():
    s = {}
    for side, box in ((16, (4, 4, 12, 12)), (4, (0, 0, 2, 4)), (64, (0, 32, 64, 64)), (256, (64, 64, 192, 192))):
        s[f"mask{side}.png"] = png(side, side, 8, 0, grey_mask(side, box))
    s["mask16_rgb_grey.png"] = png(16, 16, 8, 2, [bytes((x * 16 + y) % 256 for x in range(48)) for y in range(16)])
    s["mask1.png"] = png(1, 1, 8, 0, [b"\xff"])
    s["mask16x8.png"] = png(16, 8, 8, 0, grey_mask(16, (0, 0, 8, 8))[:8])
    return s


# ---------------------------------------------------------------- JSON

def deep(depth, inner=b"1"):
    return b"[" * depth + inner + b"]" * depth


def stream_params_seeds():
    s = {
        "readme.json": '[{"cfg": 1.5}, {"cfg": 4}, {"cfg": 4, "temperature": 1.2}, {"cfg": 0, "top_k": 50}]',
        "all_fields.json": '[{"class": 207, "seed": 1, "cfg": 1.5, "top_k": 900, "top_p": 0.96, "temperature": 1}, '
                           '{"class": "uncond", "seed": 18446744073709551615}]',
        "defaults.json": "[{}]",
        "bad_field.json": '[{"colour": 1}]',
        "bad_values.json": '[{"class": -1, "seed": -2, "cfg": 1e400, "top_k": 1.5, "top_p": 2, "temperature": 0}]',
    }
    s = {k: v.encode() for k, v in s.items()}
    s["hostile_deep.json"] = b"[" + deep(2000) + b"]"
    return s


def tokens_json_seeds():
    # The tiny model's scales (1, 2, 3, 4) and vocabulary (64), the target's model.
    maps = [[n * n + i for i in range(n * n)] for n in (1, 2, 3, 4)]
    s = {
        "tiny.json": {"patch_nums": [1, 2, 3, 4], "images": [{"class": 3, "seed": 0, "tokens": maps}]},
        "two_images_nulls.json": {"patch_nums": [1, 2, 3, 4],
                                  "images": [{"class": None, "seed": None, "tokens": maps},
                                             {"class": 1, "seed": 7, "tokens": [[63], [0] * 4, [1] * 9, [2] * 16]}]},
        "released_scales.json": {"patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16], "images": []},
        "bad_token.json": {"patch_nums": [1, 2, 3, 4], "images": [{"tokens": [[64], [0] * 4, [0] * 9, [0] * 16]}]},
    }
    s = {k: json.dumps(v).encode() for k, v in s.items()}
    s["hostile_huge_patch_nums.json"] = b'{"patch_nums": [1e300, 4294967297, -1, 2.5], "images": [{"tokens": []}]}'
    s["hostile_deep_token.json"] = b'{"patch_nums": [1, 2, 3, 4], "images": [{"tokens": [[' + deep(2000) + b"]]}]}"
    return s


def request_body_seeds():
    s = ['{"class": 207, "seed": 1}', '{"class": "uncond", "seed": 2, "cfg": 1.5, "format": "tokens"}',
         '{"class": 207, "seed": 2, "cfg": 1.5, "top_p": 0.96, "top_k": 900, "temperature": 1.2, "format": "png"}',
         '{"class": 1000}', '{"seed": 1}', '{"class": 5, "seed": -1, "top_k": 1e30}', "[]"]
    out = {f"body{i}.json": b.encode() for i, b in enumerate(s)}
    out["hostile_deep.json"] = b'{"class": ' + deep(2000) + b"}"
    return out


def json_files():
    """Small JSON files of the test data, for the JSON parsers' structure."""
    return {f"{p.parent.name}_{p.name}": p.read_bytes() for p in sorted(DATA.rglob("*.json"))
            if p.stat().st_size <= 4096}


# ---------------------------------------------------------------- corpora

def corpora():
    c = {t: {} for t in ("pickle", "torch_zip", "safetensors", "png", "adapter", "stream_params", "tokens_json",
                         "request_body", "edit_mask")}

    for name, tensors, storages in small_state_dicts():
        pkl = state_dict_pickle(tensors)
        c["pickle"][f"{name}.pkl"] = pkl
        c["torch_zip"][f"{name}.records"] = record_list(archive("archive", pkl, storages))
        c["torch_zip"][f"{name}.pth"] = zip_bytes(archive("archive", pkl, storages))
    _, tensors, storages = small_state_dicts()[1]
    c["pickle"]["no_metadata.pkl"] = state_dict_pickle(tensors, metadata=False)
    pkl = state_dict_pickle(tensors)
    extra = [("version", b"3\n"), ("byteorder", b"little"), (".data/serialization_id", b"0123456789")]
    c["torch_zip"]["torch2_extras.records"] = record_list(archive("var", pkl, storages, extra))
    c["torch_zip"]["big_endian.records"] = record_list(archive("var", pkl, storages, [("byteorder", b"big")]))
    c["torch_zip"]["deflated.pth"] = zip_bytes(archive("var", pkl, storages, extra), zipfile.ZIP_DEFLATED)

    for pth, z, names, pkl_name, pkl in real_pickles():
        if len(pkl) > MAX_DERIVED:
            continue
        tag = f"{pth.parent.name}_{pth.stem}"
        c["pickle"][f"{tag}.pkl"] = pkl
        # The real pickle in its archive, the storages cut to 16 bytes (the
        # reader then refuses the first tensor whose storage is short).
        records = [(n, pkl if n == pkl_name else z.read(n)[:16]) for n in names]
        c["torch_zip"][f"{tag}_cut.records"] = record_list(records)

    c["pickle"]["hostile_amplifying_rank1.pkl"] = amplifying_pickle(1000, 1)
    c["pickle"]["hostile_amplifying_rank64.pkl"] = amplifying_pickle(40, 64)
    c["pickle"]["hostile_nested_tuples.pkl"] = b"\x80\x02N" + b"\x85" * 2000 + b"."
    c["pickle"]["hostile_os_system.pkl"] = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
    # ~15 KB on disk: 2 million _rebuild_tensor_v2 calls on one memoised
    # tuple, 10 MB of pickle, deflated.
    c["torch_zip"]["hostile_amplifying_2M_calls.pth"] = zip_bytes(
        archive("archive", amplifying_pickle(2_000_000, 1), {"0": bytes(24)}), zipfile.ZIP_DEFLATED)

    for st in sorted(DATA.rglob("*.safetensors")):
        if len(seed := shrunk(st)) <= MAX_DERIVED:
            c["safetensors"][f"{st.parent.name}_{st.stem}_shrunk.safetensors"] = seed
    c["safetensors"]["dtypes.safetensors"] = safetensors(
        [(d.lower(), d, [2, 2], bytes(range(4 * n))) for d, n in DTYPE_SIZE.items()] +
        [("empty", "F32", [0, 5], None), ("scalar", "F64", [], struct.pack("<d", 1.5))], {"format": "pt"})
    deep_header = b'{"a":' + deep(4000) + b"}"
    c["safetensors"]["hostile_deep_header.safetensors"] = struct.pack("<Q", len(deep_header)) + deep_header
    c["safetensors"]["hostile_header_length.safetensors"] = struct.pack("<Q", 1 << 62) + b"{}"
    c["safetensors"]["hostile_empty_huge_shape.safetensors"] = safetensors(
        [("e", "F32", [0, 1 << 62, 1 << 62], None)])

    for st in sorted(DATA.rglob("parscale_*.safetensors")):
        c["adapter"][f"{st.stem}_narrow.safetensors"] = narrow_adapter(st)
    c["adapter"]["small_p2.safetensors"] = adapter(depth=2, P=2, H=1, T=1, hd=2)
    c["adapter"]["p1_t0.safetensors"] = adapter(1, 1, 2, 0, 1, {"parscale_attn_smooth": "0"})
    c["adapter"]["hostile_overflow_shape.safetensors"] = adapter(depth=2, P=1, H=1, T=0, hd=1,
                                                                 prefix_shape=[1, 2, 0, 1 << 62])
    c["adapter"]["bad_metadata.safetensors"] = adapter(1, 2, 1, 1, 2, {"parscale_n": "2x",
                                                                       "parscale_attn_smooth": "nan"})

    c["png"] = png_seeds()
    c["edit_mask"] = {**mask_seeds(), **{k: v for k, v in png_seeds().items() if k.startswith("hostile")}}
    c["stream_params"] = {**stream_params_seeds(), **json_files()}
    c["tokens_json"] = {**tokens_json_seeds(), **json_files()}
    c["request_body"] = {**request_body_seeds(), **json_files()}
    return c


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    out = Path(sys.argv[1])
    for target, seeds in corpora().items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds, {sum(len(v) for v in seeds.values())} bytes")


if __name__ == "__main__":
    main()
