#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (docs/fuzzing.md): small valid files of each
format and malformed ones (truncated, bad magic, impossible sizes, a 10^12-element header).
Standard library only. Run from anywhere: python3 fuzz/corpus/make_seeds.py
Regression inputs found by fuzzing are added by hand next to these (named regress-*)."""
import gzip
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(reader, name, data):
    folder = os.path.join(HERE, reader)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- IDX ------------------------------------------------------------------------------
def idx(code, dims, payload=b""):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


images = idx(0x08, [2, 2, 3], bytes([0, 1, 2, 127, 128, 255, 10, 20, 30, 40, 50, 60]))
put("idx", "ubyte-2x2x3.idx", images)
put("idx", "labels-5.idx", idx(0x08, [5], bytes([9, 0, 0, 3, 7])))
put("idx", "sbyte.idx", idx(0x09, [4], bytes([0x80, 0x7F, 0xFF, 0])))
put("idx", "int16.idx", idx(0x0B, [3], struct.pack(">hhh", -32768, 32767, 258)))
put("idx", "int32.idx", idx(0x0C, [1, 3], struct.pack(">iii", -2**31, 2**24, -5)))
put("idx", "float32.idx", idx(0x0D, [3], struct.pack(">fff", 1.5, -0.25, 3.0e38)))
put("idx", "float64.idx", idx(0x0E, [1, 1, 1, 3], struct.pack(">ddd", 0.1, -2.5, 1e-3)))
put("idx", "empty-dim.idx", idx(0x08, [0, 28, 28]))
put("idx", "images.idx.gz", gz(images))
put("idx", "two-members.idx.gz", gz(images[:7]) + gz(images[7:]))
put("idx", "truncated-magic.idx", bytes([0, 0, 8]))
put("idx", "truncated-dims.idx", bytes([0, 0, 8, 3]) + struct.pack(">II", 2, 2))
put("idx", "truncated-data.idx", idx(0x08, [2, 2, 3], b"\x01\x02\x03"))
put("idx", "trailing.idx", idx(0x08, [2], b"\x01\x02\x03"))
put("idx", "bad-magic.idx", bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]))
put("idx", "bad-type.idx", idx(0x0A, [1], b"\x07"))
put("idx", "ndim0.idx", bytes([0, 0, 8, 0, 7]))
put("idx", "ndim5.idx", idx(0x08, [1, 1, 1, 1, 1]))
put("idx", "huge-1e12.idx", idx(0x08, [1000000, 1000000], b"\x01\x02\x03"))
put("idx", "huge-1e12.idx.gz", gz(idx(0x08, [1000000, 1000000], b"\x01\x02\x03")))
put("idx", "overflow.idx", idx(0x0E, [0xFFFFFFFF] * 3))
put("idx", "nan.idx", idx(0x0D, [2], struct.pack(">f", 1.0) + bytes([0x7F, 0xC0, 0, 0])))
put("idx", "float64-too-big.idx", idx(0x0E, [1], struct.pack(">d", 1e300)))
put("idx", "truncated.idx.gz", gz(idx(0x08, [300], bytes(range(256)) + bytes(44)))[:40])
put("idx", "bomb.idx.gz", gz(idx(0x08, [2, 2], bytes(1 << 16))))
put("idx", "trailing-garbage.idx.gz", gz(images) + b"junk")


# ---- NPY ------------------------------------------------------------------------------
def npy(descr, shape, payload, major=1, fortran=False, header=None):
    if header is None:
        shape_text = "(" + "".join(f"{d}, " for d in shape)[:-2] + ("," if len(shape) == 1 else "") + ")"
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
            descr, "True" if fortran else "False", shape_text)
    prefix = 10 if major == 1 else 12
    while (prefix + len(header) + 1) % 64:
        header += " "
    header += "\n"
    length = struct.pack("<H", len(header)) if major == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + length + header.encode("latin1") + payload


put("npy", "f4-2x3.npy", npy("<f4", [2, 3], struct.pack("<6f", 1.5, -2, 0.25, 3e38, -0.0, 7)))
put("npy", "f8-3.npy", npy("<f8", [3], struct.pack("<3d", 0.1, -2.0, 1e10)))
put("npy", "u1-2x2.npy", npy("|u1", [2, 2], bytes([0, 127, 128, 255])))
put("npy", "i1.npy", npy("|i1", [2], bytes([0xFF, 5])))
put("npy", "i2.npy", npy("<i2", [2], struct.pack("<hh", -7, 300)))
put("npy", "i4-v3.npy", npy("<i4", [3], struct.pack("<3i", -7, 0, 1 << 20), major=3))
put("npy", "i8.npy", npy("<i8", [2], struct.pack("<2q", -3, 1 << 40)))
put("npy", "f4-v2.npy", npy("<f4", [1, 2], struct.pack("<2f", 4, -8.5), major=2))
put("npy", "zero-rows.npy", npy("<f4", [0, 5], b""))
put("npy", "key-order.npy", npy(None, None, struct.pack("<2f", 1, 2),
                                header="{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}"))
put("npy", "fortran.npy", npy("<f4", [2, 2], struct.pack("<4f", 1, 2, 3, 4), fortran=True))
put("npy", "big-endian.npy", npy(">f4", [1], struct.pack(">f", 1)))
put("npy", "structured.npy", npy(None, None, struct.pack("<f", 1),
                                 header="{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }"))
put("npy", "scalar.npy", npy("<f4", [], struct.pack("<f", 1), header="{'descr': '<f4', 'fortran_order': False, 'shape': (), }"))
put("npy", "huge-1e12.npy", npy("|u1", [1000000, 1000000], b"abc"))
put("npy", "overflow.npy", npy("<f8", [4611686018427387904, 4], b""))
put("npy", "truncated-data.npy", npy("<f4", [2, 2], struct.pack("<2f", 1, 2)))
put("npy", "trailing.npy", npy("<f4", [1], struct.pack("<2f", 1, 2)))
put("npy", "header-beyond-file.npy", npy("<f4", [1], struct.pack("<f", 1), major=2)[:40])
put("npy", "header-4GiB.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF) + b"{}")
put("npy", "truncated-prefix.npy", b"\x93NUM")
put("npy", "nan.npy", npy("<f4", [2], struct.pack("<f", 1) + bytes([0, 0, 0xC0, 0x7F])))
put("npy", "f8-too-big.npy", npy("<f8", [1], struct.pack("<d", 1e300)))
put("npy", "duplicate-key.npy", npy(None, None, struct.pack("<f", 1),
                                    header="{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (1,), }"))

# ---- CSV ------------------------------------------------------------------------------
put("csv", "header-label-first.csv", "label,x1,x2\n1,0.5,2\n0,-1.25,3e2\n2,7,+8\n")
put("csv", "no-header-label-last.csv", "0.5,2,1\n-1,3,0\n")
put("csv", "semicolon.csv", "1;0.5;2\n0;3;4\n")
put("csv", "blank-lines-crlf.csv", "x,label\r\n\r\n1.5,1\r\n  2 ,\t0\r\n\r\n")
put("csv", "ragged.csv", "1,2,3\n0,1\n")
put("csv", "nan.csv", "1,nan\n")
put("csv", "inf.csv", "1,inf\n0,-1e400\n")
put("csv", "empty-field.csv", "1,,2\n")
put("csv", "float32-overflow.csv", "1,1e39\n")
put("csv", "big-label.csv", "2147483646,1\n")
put("csv", "label-fraction.csv", "1.5,1\n")
put("csv", "header-only.csv", "label,x\n")
put("csv", "single-column.csv", "1\n2\n")
put("csv", "binary.csv", b"1,\x00\xff\n")

# ---- safetensors ----------------------------------------------------------------------
def st(header, data=b"", pad=True):
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    if pad:
        text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + data


put("safetensors", "two-tensors.safetensors", st({
    "__metadata__": {"format": "pt"},
    "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
}, struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<q", -1)))
put("safetensors", "empty.safetensors", st({}))
put("safetensors", "scalar-and-zero.safetensors", st({
    "s": {"dtype": "BF16", "shape": [], "data_offsets": [0, 2]},
    "z": {"dtype": "U8", "shape": [0, 3], "data_offsets": [2, 2]},
}, b"\x80\x3f"))
put("safetensors", "short.safetensors", b"\x01\x02")
put("safetensors", "header-2^63.safetensors", struct.pack("<Q", 1 << 63) + b"{}")
put("safetensors", "header-beyond-file.safetensors", struct.pack("<Q", 64) + b"{}")
put("safetensors", "huge-1e12.safetensors", st({"x": {"dtype": "U8", "shape": [1000000, 1000000],
                                                      "data_offsets": [0, 1000000000000]}}, b"abc"))
put("safetensors", "overflow.safetensors", st({"x": {"dtype": "F64", "shape": [2**62, 4],
                                                     "data_offsets": [0, 8]}}, bytes(8)))
put("safetensors", "offsets-mismatch.safetensors", st({"x": {"dtype": "F32", "shape": [2],
                                                             "data_offsets": [0, 4]}}, bytes(4)))
put("safetensors", "gap.safetensors", st({"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}, bytes(2)))
put("safetensors", "overlap.safetensors", st({
    "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
    "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, bytes(3)))
put("safetensors", "duplicate.safetensors",
    st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"))
put("safetensors", "deep.safetensors", st('{"a":{"dtype":"U8","shape":[[[1]]],"data_offsets":[0,1]}}', b"\x00"))
put("safetensors", "invalid-json.safetensors", st('{"a":', b""))
put("safetensors", "not-object.safetensors", st('[1,2]', b""))
put("safetensors", "metadata-not-strings.safetensors", st({"__metadata__": {"k": 1}}))
put("safetensors", "unknown-dtype.safetensors", st({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)))


# ---- checkpoint (src/train/checkpoint.cpp) -------------------------------------------------
def ckpt(tensors, step=3, state=None, config='name = "x"\n', damage=None):
    """A descent checkpoint: safetensors with format/step/state/config metadata and the
    CRC-32 of every tensor (name, dtype, dims, bytes) and every other metadata entry."""
    import zlib
    meta = {"config": config, "format": "descent-checkpoint/1",
            "state": json.dumps(state if state is not None else {"loop": {"k": step}}, separators=(",", ":")),
            "step": str(step)}
    crc = 0
    def add(b):
        nonlocal crc
        crc = zlib.crc32(b, crc)
    header, data = {}, b""
    for name, dtype, payload in tensors:
        size = {"F32": 4, "F64": 8, "I32": 4}[dtype]
        n = len(payload) // size
        for text in (name, dtype, str(n)):
            add(text.encode() + b"\0")
        add(payload)
        header[name] = {"dtype": dtype, "shape": [n], "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    for key in sorted(meta):
        add(key.encode() + b"\0")
        add(meta[key].encode() + b"\0")
    meta["checksum"] = "%08x" % crc if damage is None else damage
    return st({"__metadata__": meta, **header}, data)


params = struct.pack("<3f", 1.0, -2.5, 3.25)
put("checkpoint", "small.ckpt", ckpt([("params", "F32", params), ("best", "F32", params),
                                     ("optimizer.0", "F64", struct.pack("<2d", 0.5, -1e-300)),
                                     ("labels", "I32", struct.pack("<2i", 7, -1))]))
put("checkpoint", "no-tensors.ckpt", ckpt([], step=0))
put("checkpoint", "bad-checksum.ckpt", ckpt([("params", "F32", params)], damage="00000000"))
put("checkpoint", "state-not-object.ckpt", ckpt([("params", "F32", params)], state=[1, 2]))
put("checkpoint", "f16-tensor.ckpt", st({"__metadata__": {"format": "descent-checkpoint/1", "step": "1",
                                                          "state": "{}", "config": "", "checksum": "0"},
                                         "x": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}, b"\0\0"))
put("checkpoint", "foreign.ckpt", st({"__metadata__": {"format": "pt"}}))
put("checkpoint", "truncated.ckpt", ckpt([("params", "F32", params)])[:-5])

# ---- config (TOML) ------------------------------------------------------------------------
for name in sorted(os.listdir(os.path.join(ROOT, "examples"))):
    if name.endswith(".toml"):
        shutil.copy(os.path.join(ROOT, "examples", name), os.path.join(HERE, "config", name))
put("config", "empty.toml", "")
put("config", "minimal.toml", 'name = "x"\nepochs = 1\n[optimizer]\nname = "adam"\nlr = 1e-3\n')
put("config", "overrides.toml", '[optimizer]\nname = "momentum"\n#--set optimizer.lr=0.01\n'
    '#--set model.hidden=[10, 20]\n#--set sampler.batch_size=full\n#--set name=2024\n')
put("config", "csv-data.toml", '[data]\nformat = "csv"\ntrain_features = "a.csv"\ntest_features = "b.csv"\n'
    'csv_label_column = -1\ncsv_header = true\n[sampler]\nkind = "stream"\nbatch_size = "full"\n')
put("config", "big-seed.toml", 'seed = "18446744073709551615"\n')
put("config", "syntax-error.toml", '[optimizer\nlr = 1\n')
put("config", "unknown-key.toml", '[optimizer]\nlrr = 0.1\n')
put("config", "wrong-type.toml", 'epochs = "ten"\n[model]\nhidden = [1.5]\n')
put("config", "huge-int.toml", 'epochs = 99999999999999999999\n')
put("config", "bad-override.toml", '#--set optimizer\n#--set =1\n#--set optimizer.lr=-1\n')
put("config", "invalid-utf8.toml", b'name = "\xff\xfe"\n')

# ---- regressions: inputs that violated the contract once (docs/fuzzing.md, "Findings") ----
# toml++ quotes the offending characters, a line break included: the message had two lines.
put("config", "regress-syntax-error-newline.toml", "progress = fal\n")
# A JSON "\n" in a key decodes to a line break, which the message quoted raw (two lines).
put("safetensors", "regress-newline-in-key.safetensors",
    st('{"s":{"dtype":"F32",":sh\\n":1,":sh\\n":2}}'))
# A 5000-byte tensor name was quoted whole.
put("safetensors", "regress-long-name.safetensors",
    st({"n" * 5000: {"dtype": "U8", "shape": [2], "data_offsets": [0, 1]}}, b"\x00"))
# A quoted TOML key "a\nb" decodes to a line break, and a 3000-byte key was quoted whole.
put("config", "regress-newline-in-key.toml", '"a\\nb" = 1\n')
put("config", "regress-long-key.toml", "k" * 3000 + " = 1\n")
# An unknown --set key of 500 bytes was quoted twice in full.
put("config", "regress-long-set.toml", "#--set optimizer." + "j" * 500 + "=1\n")
# An unknown value of a choice key, or an unknown layer type, was quoted in full, and an
# unknown key of a layer table was quoted raw.
put("config", "regress-long-choice.toml", '[optimizer]\nname = "' + "q" * 2000 + '"\n')
put("config", "regress-layer-key.toml",
    '[model]\ntype = "sequential"\nlayers = [{type = "' + "t" * 2000 + '"}, {type = "relu", "a\\nb" = 1}]\n')
put("config", "regress-layer-newline-key.toml",
    '[model]\ntype = "sequential"\nlayers = [{type = "flatten", "a\\nb" = 1}]\n')


# ---- shard sets (data/shards.hpp): first byte 0 = the index's JSON, 1 = a shard file -----------
def shard(dtype_code, dim, ids, labels, features):
    head = b"DSCSHARD" + struct.pack("<IIQQ", 1, dtype_code, dim, len(labels)) + bytes(16)
    return head + struct.pack("<%dq" % len(ids), *ids) + struct.pack("<%di" % len(labels), *labels) + features


def shard_index(entries, dtype="u8", shape=(2, 2), classes=3):
    return json.dumps({"format": "descent-shards", "version": 1, "dtype": dtype, "shape": list(shape),
                       "classes": classes, "seed": 7, "shuffled": True, "augment_shifts": 0,
                       "parts": {"train": entries}})


good_u8 = shard(1, 4, [0, 1], [2, 0], bytes(range(8)))
put("shards", "u8-2x4.bin", b"\x01" + good_u8)
put("shards", "f32-1x2.bin", b"\x01" + shard(2, 2, [5], [1], struct.pack("<2f", 0.5, -1)))
put("shards", "truncated.bin", b"\x01" + good_u8[:-3])
put("shards", "bad-label.bin", b"\x01" + shard(1, 4, [0], [9], bytes(4)))
put("shards", "huge-count.bin", b"\x01" + b"DSCSHARD" + struct.pack("<IIQQ", 1, 2, 1 << 32, 1 << 40) + bytes(16))
put("shards", "index.json", b"\x00" + shard_index([{"file": "train-00000.shard", "examples": 2, "bytes": 48 + 2 * 16,
                                                      "crc32": 12345}]).encode())
put("shards", "index-bad-bytes.json", b"\x00" + shard_index([{"file": "a", "examples": 2, "bytes": 7, "crc32": 1}]).encode())
put("shards", "index-f32.json", b"\x00" + shard_index([{"file": "a", "examples": 1, "bytes": 48 + 12 + 4,
                                                         "crc32": 0}], "f32", (1,), 2).encode())
