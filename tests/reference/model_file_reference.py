#!/usr/bin/python3
"""Uses a descent model.safetensors as a PyTorch user would, from its metadata alone.

For each case below: trains a small model with the descent CLI, then reads model.safetensors
(header parsed here, no safetensors package), rebuilds the network in PyTorch from the
"layers" metadata, reads the Fashion-MNIST test images from the raw IDX files, preprocesses
them with the stored "preprocessing" (scale, fitted mean and standard deviation), and checks
that the test loss and accuracy equal those descent wrote in metrics.jsonl (loss to 1e-5
relative, the error counts exactly). config.toml is never read.

    /usr/bin/python3 tests/reference/model_file_reference.py DESCENT_BINARY WORK_DIR [IDX_DIR]

Exits 0 when every case agrees, 1 otherwise, 77 (SKIP) when torch or numpy cannot be imported
or the data is missing.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

SKIP = 77


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    skip("%s is not importable under %s (scripts/install-deps --bench installs python3-torch and python3-numpy)"
         % (e.name, sys.executable))


def read_safetensors(path):
    """(tensors by name as numpy arrays, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = blob[8 + n:]
    dtypes = {"F32": np.float32, "F64": np.float64}
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return tensors, metadata


def read_idx(path):
    with gzip.open(path, "rb") as f:
        blob = f.read()
    ndim = blob[3]
    dims = struct.unpack(">" + "I" * ndim, blob[4:4 + 4 * ndim])
    return np.frombuffer(blob[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def build(layers, tensors, dtype):
    """The network of the "layers" metadata as a function of a [batch, features] tensor."""
    def param(layer, key):
        return torch.from_numpy(tensors[layer["tensors"][key]].copy()).to(dtype)

    steps = []
    for layer in layers:
        kind = layer["type"]
        if kind == "linear":
            w = param(layer, "weight")  # [out, in], as torch.nn.Linear
            b = param(layer, "bias") if layer["bias"] else None
            steps.append(lambda x, w=w, b=b: F.linear(x, w, b))
        elif kind in ("relu", "tanh", "sigmoid"):
            steps.append({"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[kind])
        elif kind == "dropout":
            pass  # evaluation: the identity
        elif kind == "batchnorm":
            w, b = param(layer, "weight"), param(layer, "bias")
            mean, var = param(layer, "running_mean"), param(layer, "running_var")
            steps.append(lambda x, w=w, b=b, m=mean, v=var, eps=layer["eps"]:
                         F.batch_norm(x, m, v, w, b, training=False, eps=eps))
        else:
            raise SystemExit("model_file_reference: layer type %r is not rebuilt by this script" % kind)

    def forward(x):
        for step in steps:
            x = step(x)
        return x
    return forward


def check(run_dir, idx_dir):
    tensors, meta = read_safetensors(os.path.join(run_dir, "model.safetensors"))
    pre = json.loads(meta["preprocessing"])
    layers = json.loads(meta["layers"])
    classes = int(meta["classes"])
    (features,) = json.loads(meta["input_shape"])
    dtype = {"f32": torch.float32, "f64": torch.float64}[pre["dtype"]]

    images = read_idx(os.path.join(idx_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(idx_dir, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    x = images.reshape(len(images), -1).astype(np.float32) * np.float32(pre["scale"])
    assert x.shape[1] == features, (x.shape, features)
    if pre["standardize"] != "none":
        mean = np.asarray(pre["mean"], dtype=np.float32)
        stddev = np.asarray(pre["stddev"], dtype=np.float32)
        x = (x - mean) / stddev  # one value (global) broadcasts over the features
    x = torch.from_numpy(x).to(dtype)

    with torch.no_grad():
        logits = build(layers, tensors, dtype)(x)
    assert logits.shape == (len(labels), classes), logits.shape
    y = torch.from_numpy(labels)
    loss = F.cross_entropy(logits, y).item()
    errors = int((logits.argmax(dim=1) != y).sum())

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        final = [r for r in map(json.loads, f) if r.get("kind") == "final"][-1]
    want_errors = round(final["test_error"] * len(labels))
    ok = abs(loss - final["test_loss"]) <= 1e-5 * abs(final["test_loss"]) and errors == want_errors
    print("%s: PyTorch loss %.9f, %d errors; descent loss %.9f, %d errors: %s"
          % (run_dir, loss, errors, final["test_loss"], want_errors, "agree" if ok else "DIFFER"))
    return ok


BASE = 'epochs = 2\nprogress = "none"\n[data]\ndir = "{dir}"\nlimit_train = 3000\nvalidation_size = 500\n' \
       'standardize = "{standardize}"\n[optimizer]\nname = "momentum"\nlr = 0.02\n[model]\ndtype = "{dtype}"\n'
CASES = {
    # The default model's form: an MLP, per-feature standardization, f32.
    "mlp_per_feature_f32": BASE.format(dir="{dir}", standardize="per_feature", dtype="f32") + 'hidden = [32, 16]\n',
    # Batch normalization and dropout, one global mean and standard deviation, f64.
    "sequential_global_f64": BASE.format(dir="{dir}", standardize="global", dtype="f64") +
    'type = "sequential"\n[[model.layers]]\ntype = "linear"\nunits = 24\n[[model.layers]]\ntype = "batchnorm"\n'
    '[[model.layers]]\ntype = "tanh"\n[[model.layers]]\ntype = "dropout"\np = 0.2\n'
    '[[model.layers]]\ntype = "linear"\n',
}


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    descent, work = sys.argv[1], sys.argv[2]
    idx_dir = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/datasets/fashion-mnist"
    if not os.path.exists(os.path.join(idx_dir, "t10k-images-idx3-ubyte.gz")):
        skip("no Fashion-MNIST IDX files in " + idx_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ok = True
    for name, text in CASES.items():
        config = os.path.join(work, name + ".toml")
        with open(config, "w") as f:
            f.write(text.format(dir=idx_dir))
        subprocess.run([descent, "train", config, "--out", work, "--name", name], check=True,
                       stdout=subprocess.DEVNULL)
        ok = check(os.path.join(work, name), idx_dir) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
