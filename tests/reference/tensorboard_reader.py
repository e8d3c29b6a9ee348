#!/usr/bin/python3
"""An independent reader of TensorBoard event files, written from the format's specification.

Standard library only: its own CRC-32C and protobuf wire-format decoding; nothing of descent's
writer (src/io/tensorboard.cpp) is used or imitated. The format:

  TFRecord (tensorflow/core/lib/io/record_writer.cc's documented framing):
    uint64 length (little-endian), uint32 masked_crc32c(length bytes), data[length],
    uint32 masked_crc32c(data); masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 mod 2^32
  tensorflow.Event (event.proto): wall_time = 1 double, step = 2 int64, file_version = 3
    string, summary = 5 Summary
  Summary (summary.proto): value = 1 repeated Value; Value: tag = 1 string, simple_value = 2
    float, histo = 5 HistogramProto (min 1, max 2, num 3, sum 4, sum_squares 5 doubles,
    bucket_limit 6 and bucket 7 packed repeated doubles)

Usage:
  tensorboard_reader.py dump EVENT_FILE [--ignore TAG_PART ...]
      prints one line per scalar "step<TAB>tag<TAB>value" (value as float32's repr), sorted
  tensorboard_reader.py check RUN_DIR [--grads EXPECT.json]
      checks the run folder's tb/ event files against metrics.jsonl, config.toml and the
      checkpoints (see check_run); --grads: a JSON object {"<step>": {"<param>": {"num",
      "min", "max", "sum"}}} of gradient figures computed by the test itself
Exit status 0 when everything agrees, 1 with a message naming the problem otherwise.
"""
import glob
import json
import math
import os
import struct
import sys
import tomllib


class Bad(Exception):
    pass


# ---- CRC-32C (Castagnoli), bit by bit from the polynomial --------------------------------
def _make_table():
    poly = 0x82F63B78  # 0x1EDC6F41 reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(c):
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C


# ---- TFRecord framing ------------------------------------------------------------------
def records(blob, name):
    """The data of each record, every CRC checked."""
    pos, index = 0, 0
    out = []
    while pos < len(blob):
        if len(blob) - pos < 12:
            raise Bad("%s: record %d at byte %d: %d bytes left, too few for a header" % (name, index, pos, len(blob) - pos))
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if masked(crc32c(header)) != length_crc:
            raise Bad("%s: record %d at byte %d: length CRC mismatch" % (name, index, pos))
        start = pos + 12
        end = start + length
        if end + 4 > len(blob):
            raise Bad("%s: record %d at byte %d: cut short (%d data bytes announced)" % (name, index, pos, length))
        data = blob[start:end]
        (data_crc,) = struct.unpack("<I", blob[end:end + 4])
        if masked(crc32c(data)) != data_crc:
            raise Bad("%s: record %d at byte %d: data CRC mismatch" % (name, index, pos))
        out.append(data)
        pos = end + 4
        index += 1
    return out


# ---- protobuf wire format --------------------------------------------------------------
def varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise Bad("varint runs past the end of the message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise Bad("varint longer than 10 bytes")


def fields(buf):
    """{field number: [(wire type, raw value)]} of one message."""
    out = {}
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            value = buf[pos:pos + n]
            pos += n
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise Bad("unsupported wire type %d (field %d)" % (wire, number))
        if pos > len(buf):
            raise Bad("field %d runs past the end of the message" % number)
        out.setdefault(number, []).append((wire, value))
    return out


def one(f, number, wire, default=None):
    vals = f.get(number, [])
    if not vals:
        return default
    w, v = vals[-1]
    if w != wire:
        raise Bad("field %d has wire type %d, expected %d" % (number, w, wire))
    return v


def as_double(raw):
    return struct.unpack("<d", raw)[0]


def as_int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def packed_doubles(f, number):
    out = []
    for w, v in f.get(number, []):
        if w == 2:
            if len(v) % 8:
                raise Bad("packed doubles of field %d: %d bytes" % (number, len(v)))
            out.extend(struct.unpack("<%dd" % (len(v) // 8), v))
        elif w == 1:
            out.append(as_double(v))
        else:
            raise Bad("field %d: wire type %d for doubles" % (number, w))
    return out


def parse_event(data):
    f = fields(data)
    event = {"wall_time": as_double(one(f, 1, 1, b"\0" * 8)), "step": as_int64(one(f, 2, 0, 0)),
             "file_version": None, "scalars": [], "histograms": []}
    fv = one(f, 3, 2)
    if fv is not None:
        event["file_version"] = fv.decode("utf-8")
    for w, summary in f.get(5, []):
        if w != 2:
            raise Bad("Event.summary with wire type %d" % w)
        for w2, value in fields(summary).get(1, []):
            if w2 != 2:
                raise Bad("Summary.value with wire type %d" % w2)
            vf = fields(value)
            tag = one(vf, 1, 2, b"").decode("utf-8")
            simple = one(vf, 2, 5)
            histo = one(vf, 5, 2)
            if simple is not None:
                event["scalars"].append((tag, struct.unpack("<f", simple)[0]))
            if histo is not None:
                hf = fields(histo)
                event["histograms"].append((tag, {
                    "min": as_double(one(hf, 1, 1, b"\0" * 8)), "max": as_double(one(hf, 2, 1, b"\0" * 8)),
                    "num": as_double(one(hf, 3, 1, b"\0" * 8)), "sum": as_double(one(hf, 4, 1, b"\0" * 8)),
                    "sum_squares": as_double(one(hf, 5, 1, b"\0" * 8)),
                    "bucket_limit": packed_doubles(hf, 6), "bucket": packed_doubles(hf, 7)}))
            if simple is None and histo is None:
                raise Bad("Summary.Value '%s' holds neither simple_value nor histo" % tag)
    return event


def read_events(path):
    with open(path, "rb") as fh:
        blob = fh.read()
    try:
        return [parse_event(r) for r in records(blob, path)]
    except Bad as e:
        raise Bad(str(e) if str(e).startswith(path) else "%s: %s" % (path, e))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---- what metrics.jsonl says the event file must hold (docs/tensorboard.md) -------------
READABLE = {("step", "loss"): "train/batch_loss", ("step", "grad_norm"): "grad_norm", ("step", "lr"): "lr",
            ("final", "test_loss"): "test/loss", ("final", "test_error"): "test/error",
            ("final", "test_accuracy"): "test/accuracy"}
for _kind in ("eval", "epoch"):
    for _split in ("train", "val"):
        for _what in ("loss", "error"):
            READABLE[(_kind, "%s_%s" % (_split, _what))] = "%s/%s" % (_split, _what)


def flatten(tag, v, out):
    if isinstance(v, bool):
        out.append((tag, 1.0 if v else 0.0))
    elif isinstance(v, (int, float)):
        out.append((tag, float(v)))
    elif isinstance(v, dict):
        for k, item in v.items():
            flatten(tag + "/" + k, item, out)
    elif isinstance(v, list):
        for i, item in enumerate(v):
            name = str(i)
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                name = item["name"]
                if isinstance(item.get("gate"), str) and item["gate"]:
                    name += "/" + item["gate"]
            flatten(tag + "/" + name, item, out)


def expected_scalars(record):
    kind = record.get("kind", "record")
    out = []
    for key, value in record.items():
        if key in ("kind", "step", "epoch", "wall_s"):
            continue
        flatten(READABLE.get((kind, key), "%s/%s" % (kind, key)), value, out)
    step = record.get("step", record.get("steps", 0))
    return [(step, tag, f32(v)) for tag, v in out]


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def read_safetensors(path):
    with open(path, "rb") as fh:
        blob = fh.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    fmt = {"F32": ("f", 4), "F64": ("d", 8)}
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        code, size = fmt[t["dtype"]]
        tensors[name] = {"values": struct.unpack("<%d%s" % ((end - begin) // size, code), data[begin:end]),
                         "begin": begin, "shape": t["shape"]}
    return tensors, meta


def check_histogram(where, h, values=None, figures=None):
    """Internal consistency; with `values`, exact agreement with them; with `figures`, with those."""
    limits, counts = h["bucket_limit"], h["bucket"]
    if len(limits) != len(counts) or not limits:
        raise Bad("%s: %d bucket limits, %d buckets" % (where, len(limits), len(counts)))
    if any(b <= a for a, b in zip(limits, limits[1:])):
        raise Bad("%s: bucket limits not increasing" % where)
    if sum(counts) != h["num"]:
        raise Bad("%s: buckets hold %g values, num says %g" % (where, sum(counts), h["num"]))
    if h["num"] > 0 and not (h["min"] <= h["max"] and h["max"] < limits[-1]):
        raise Bad("%s: min %r, max %r, last limit %r" % (where, h["min"], h["max"], limits[-1]))
    if values is not None:
        finite = [v for v in values if math.isfinite(v)]
        if h["num"] != len(finite):
            raise Bad("%s: num %g, the tensor has %d finite values" % (where, h["num"], len(finite)))
        if h["min"] != min(finite) or h["max"] != max(finite):
            raise Bad("%s: min/max %r/%r, the tensor's %r/%r" % (where, h["min"], h["max"], min(finite), max(finite)))
        s = math.fsum(finite)
        s2 = math.fsum(v * v for v in finite)
        if abs(h["sum"] - s) > 1e-9 * max(1.0, math.fsum(abs(v) for v in finite)) or abs(h["sum_squares"] - s2) > 1e-9 * max(1.0, s2):
            raise Bad("%s: sum %r / sum_squares %r, the tensor's %r / %r" % (where, h["sum"], h["sum_squares"], s, s2))
        # bucket i counts limit[i-1] <= x < limit[i] (TensorFlow's histograms)
        mine = [0] * len(limits)
        for v in finite:
            lo, hi = 0, len(limits)
            while lo < hi:  # the first limit > v
                mid = (lo + hi) // 2
                if limits[mid] > v:
                    hi = mid
                else:
                    lo = mid + 1
            mine[lo] += 1
        if [float(c) for c in mine] != list(counts):
            raise Bad("%s: bucket counts %s, recounted %s" % (where, list(counts), mine))
    if figures is not None:
        for key in ("num", "min", "max"):
            if h[key] != figures[key]:
                raise Bad("%s: %s %r, the test computed %r" % (where, key, h[key], figures[key]))
        if abs(h["sum"] - figures["sum"]) > 1e-6 * max(1.0, abs(figures["sum"]) + h["num"] * max(abs(h["min"]), abs(h["max"]))):
            raise Bad("%s: sum %r, the test computed %r" % (where, h["sum"], figures["sum"]))


def check_run(run_dir, grads_path=None):
    files = sorted(glob.glob(os.path.join(run_dir, "tb", "events.out.tfevents.*")))
    if len(files) != 1:
        raise Bad("%s/tb: %d event files, expected 1" % (run_dir, len(files)))
    events = read_events(files[0])
    if not events or events[0]["file_version"] != "brain.Event:2":
        raise Bad("%s: the first event is not file_version brain.Event:2" % files[0])
    got = []
    histograms = {}
    for e in events:
        got.extend((e["step"], tag, v) for tag, v in e["scalars"])
        for tag, h in e["histograms"]:
            key = (e["step"], tag)
            if key in histograms:
                raise Bad("%s: histogram %s at step %d twice" % (files[0], tag, e["step"]))
            histograms[key] = h
    want = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        for line in fh:
            if line.strip():
                want.extend(expected_scalars(json.loads(line)))
    key = lambda t: (t[0], t[1], t[2] if not math.isnan(t[2]) else -1e300)
    got.sort(key=key)
    want.sort(key=key)
    if len(got) != len(want) or any(g[:2] != w[:2] or not same_float(g[2], w[2]) for g, w in zip(got, want)):
        g_set, w_set = set(got), set(want)
        extra = sorted(g_set - w_set, key=key)[:5]
        lost = sorted(w_set - g_set, key=key)[:5]
        raise Bad("%s: %d scalars, metrics.jsonl gives %d; in the file only: %s; in metrics.jsonl only: %s"
                  % (files[0], len(got), len(want), extra, lost))
    steps = sum(1 for s in want if s[1] == "train/batch_loss")
    # The updates done: the final record's "steps" (step records may be every log_every_steps).
    finals = [s for s in want if s[1] == "final/steps"]
    updates = int(finals[-1][2]) if finals else steps

    # Histograms: at steps 0, N, 2N, ... of the updates done; parameters and gradients.
    with open(os.path.join(run_dir, "config.toml"), "rb") as fh:
        config = tomllib.load(fh)
    every = config.get("tensorboard", {}).get("histogram_every_steps", 0)
    model, _ = read_safetensors(os.path.join(run_dir, "model.safetensors"))
    arena = [(name, t) for name, t in model.items() if not ("running_" in name)]
    params = [name for name, _ in sorted(arena, key=lambda nt: nt[1]["begin"])]
    want_steps = list(range(0, updates, every)) if every > 0 else []
    want_keys = sorted((s, p + "/" + n) for s in want_steps for p in ("params", "grads") for n in params)
    if sorted(histograms) != want_keys:
        raise Bad("%s: histograms at %s, expected %s" % (files[0], sorted(histograms)[:6], want_keys[:6]))
    for (step, tag), h in histograms.items():
        check_histogram("%s step %d" % (tag, step), h)
    # The parameters of each checkpoint still there (step-k.ckpt holds theta_k, the parameters
    # that update k starts from): split its flat "params" in model.safetensors' order.
    compared = 0
    for ckpt in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*.ckpt"))):
        step = int(os.path.basename(ckpt)[5:-5])
        if step not in want_steps:
            continue
        tensors, _ = read_safetensors(ckpt)
        flat = tensors["params"]["values"]
        at = 0
        for name in params:
            n = len(model[name]["values"])
            check_histogram("params/%s step %d vs %s" % (name, step, ckpt), histograms[(step, "params/" + name)],
                            values=flat[at:at + n])
            at += n
            compared += 1
        if at != len(flat):
            raise Bad("%s: params hold %d values, the model's tensors %d" % (ckpt, len(flat), at))
    grads_compared = 0
    if grads_path:
        with open(grads_path) as fh:
            expect = json.load(fh)
        for step, by_name in expect.items():
            for name, figures in by_name.items():
                key = (int(step), "grads/" + name)
                if key not in histograms:
                    raise Bad("no histogram %s at step %s" % (key[1], step))
                check_histogram("grads/%s step %s" % (name, step), histograms[key], figures=figures)
                grads_compared += 1
    print("%s: %d events, %d scalars = metrics.jsonl's (%d steps), %d histograms (%d compared with checkpoints, "
          "%d with the test's gradients)" % (files[0], len(events), len(got), steps, len(histograms), compared,
                                             grads_compared))


def main(argv):
    if len(argv) >= 3 and argv[1] == "dump":
        ignore = [argv[i + 1] for i in range(3, len(argv) - 1) if argv[i] == "--ignore"]
        rows = []
        for e in read_events(argv[2]):
            rows.extend((e["step"], tag, v) for tag, v in e["scalars"] if not any(p in tag for p in ignore))
        rows.sort(key=lambda r: (r[0], r[1]))
        for step, tag, v in rows:
            print("%d\t%s\t%r" % (step, tag, v))
        return 0
    if len(argv) >= 3 and argv[1] == "check":
        grads = argv[argv.index("--grads") + 1] if "--grads" in argv else None
        check_run(argv[2], grads)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Bad as e:
        print("tensorboard_reader: " + str(e), file=sys.stderr)
        sys.exit(1)
