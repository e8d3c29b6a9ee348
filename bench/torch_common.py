"""What the PyTorch peers in bench/ share: reading Fashion-MNIST (Debian's
dataset-fashion-mnist, IDX files plain or gzipped; gzipped ones through a decompressed copy
kept in descent's cache folder, as descent's own reader keeps one), the threads and backend switches, and the
minibatch buffer that in-order batches are copied into. Imported by torch_cnn.py,
torch_lstm.py, torch_mlp.py, torch_ddp_mlp.py and torch_time_to_accuracy.py (run from any
folder: Python puts the script's own folder, bench/, first on its path)."""
import gzip, os, struct, zlib

import torch

DATA = "/usr/share/datasets/fashion-mnist"
IMAGES, LABELS = 0x803, 0x801  # the IDX magic numbers of uint8 arrays of 3 and 1 dimensions


def read_idx(path, expect_magic, who):
    """The uint8 tensor of the IDX file `path` (or `path`.gz when `path` does not exist); exits
    with '<who>: <file>: magic ...' when its magic number is not `expect_magic`."""
    opener = open if os.path.exists(path) else gzip.open
    name = path if os.path.exists(path) else path + ".gz"
    with opener(name, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise SystemExit(f"{who}: {name}: magic {magic:#x}, expected {expect_magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def cache_dir():
    """descent's IDX cache folder (data/idx_cache.cpp: DESCENT_CACHE_DIR, XDG_CACHE_HOME/descent,
    HOME/.cache/descent) with torch-peer/ below it, or None when caching is off."""
    d = os.environ.get("DESCENT_CACHE_DIR")
    if d is not None:
        return None if d in ("", "none") else os.path.join(d, "torch-peer")
    for var, sub in (("XDG_CACHE_HOME", "descent"), ("HOME", os.path.join(".cache", "descent"))):
        root = os.environ.get(var, "")
        if root.startswith("/"):
            return os.path.join(root, sub, "torch-peer")
    return None


def decompressed(data):
    """A folder holding the four IDX files of `data` decompressed (written once, atomically,
    keyed by each .gz file's size and time), or `data` itself when caching is off or fails."""
    cache = cache_dir()
    if cache is None:
        return data
    stamp = []
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for name in names:
        path = os.path.join(data, name + ".gz")
        if not os.path.exists(path):
            return data  # plain files already
        st = os.stat(path)
        stamp.append(f"{st.st_size}.{st.st_mtime_ns}")
    folder = os.path.join(cache, f"{zlib.crc32('|'.join([os.path.abspath(data), *stamp]).encode()):08x}")
    try:
        os.makedirs(folder, exist_ok=True)
        for name in names:
            out = os.path.join(folder, name)
            if not os.path.exists(out):
                with gzip.open(os.path.join(data, name + ".gz"), "rb") as f:
                    raw = f.read()
                with open(out + f".tmp{os.getpid()}", "wb") as f:
                    f.write(raw)
                os.replace(out + f".tmp{os.getpid()}", out)
    except OSError:
        return data
    return folder


def read_split(data, split, who):
    """(images [n, 28, 28], labels [n]) as uint8 of split 'train' or 't10k' in the folder `data`,
    read from its decompressed copy (decompressed) as descent reads its own cached copy."""
    data = decompressed(data)
    return (read_idx(os.path.join(data, f"{split}-images-idx3-ubyte"), IMAGES, who),
            read_idx(os.path.join(data, f"{split}-labels-idx1-ubyte"), LABELS, who))


def load_train(data, examples, who):
    """The first `examples` training examples (all when examples <= 0) as (n, x [n, 784] float32
    in [0, 1], y [n] int64), contiguous."""
    images, labels = read_split(data, "train", who)
    n = min(examples, images.shape[0]) if examples > 0 else images.shape[0]
    x = (images[:n].reshape(n, -1).to(torch.float32) / 255.0).contiguous()
    y = labels[:n].to(torch.int64).contiguous()
    return n, x, y


def set_threads(threads, interop=None, mkldnn=None, flush_denormal=None):
    """torch's intra-op threads; inter-op threads when `interop` is given and > 0; oneDNN
    (mkldnn) on or off and denormals flushed or not when given (left as they are otherwise)."""
    torch.set_num_threads(threads)
    if interop is not None and interop > 0:
        torch.set_num_interop_threads(interop)
    if mkldnn is not None:
        torch.backends.mkldnn.enabled = bool(mkldnn)
    if flush_denormal is not None:
        torch.set_flush_denormal(bool(flush_denormal))


class InOrderBatches:
    """Minibatches of (x, y) in order, each copied into one preallocated batch buffer (as the
    C++ benchmarks do): load(s) fills the buffer with batch s and returns its size b; the
    batch is then xb[:b], yb[:b]. `steps` batches make one pass, the last one possibly short."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch, self.n = x, y, batch, x.shape[0]
        self.xb = torch.empty(batch, x.shape[1])
        self.yb = torch.empty(batch, dtype=torch.int64)
        self.steps = (self.n + batch - 1) // batch

    def load(self, s):
        begin = s * self.batch
        b = min(self.batch, self.n - begin)
        self.xb[:b].copy_(self.x[begin:begin + b])
        self.yb[:b].copy_(self.y[begin:begin + b])
        return b
