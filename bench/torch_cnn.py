"""PyTorch peer of bench/train_cnn.cpp: the same CNN (conv 32 5x5 pad 2, relu, max-pool 2,
conv 64 5x5 pad 2, relu, max-pool 2, fc 256, relu, fc 10), the same Fashion-MNIST examples
scaled to [0, 1] and preloaded, the same batch, minibatches in order copied into a batch
buffer, CrossEntropyLoss, SGD with momentum 0.9, one pass over --examples examples per
repetition, median examples/s. Prints one JSON line with the same fields.
Run with /usr/bin/python3 (Debian's python3-torch), e.g.
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/torch_cnn.py --threads 2 --examples 10000"""
import argparse, gzip, json, os, statistics, struct, time

import torch

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path, expect_magic):
    opener = open if os.path.exists(path) else gzip.open
    name = path if os.path.exists(path) else path + ".gz"
    with opener(name, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise SystemExit(f"torch_cnn: {name}: magic {magic:#x}, expected {expect_magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--examples", type=int, default=10000)
    p.add_argument("--data", default=DATA)
    p.add_argument("--mkldnn", type=int, default=1)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.backends.mkldnn.enabled = bool(a.mkldnn)
    torch.manual_seed(1)

    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte"), 0x803)
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte"), 0x801)
    n = min(a.examples, images.shape[0]) if a.examples > 0 else images.shape[0]
    x_all = (images[:n].reshape(n, -1).to(torch.float32) / 255.0).contiguous()
    y_all = labels[:n].to(torch.int64).contiguous()

    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 28, 28)),
        torch.nn.Conv2d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 7 * 7, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))
    lossf = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
    xb = torch.empty(a.batch, 784)
    yb = torch.empty(a.batch, dtype=torch.int64)
    steps = (n + a.batch - 1) // a.batch

    def load(s):
        begin = s * a.batch
        b = min(a.batch, n - begin)
        xb[:b].copy_(x_all[begin:begin + b])
        yb[:b].copy_(y_all[begin:begin + b])
        return b

    def step(b):
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(xb[:b]), yb[:b])
        loss.backward()
        opt.step()
        return loss.item()

    for s in range(min(3, steps)):  # warm-up
        step(load(s))

    rates, epoch_loss = [], 0.0
    for _ in range(a.reps):
        loss_sum = 0.0
        t0 = time.perf_counter()
        for s in range(steps):
            b = load(s)
            loss_sum += step(b) * b
        rates.append(n / (time.perf_counter() - t0))
        epoch_loss = loss_sum / n
    rate = statistics.median(rates)
    print(json.dumps({
        "impl": "pytorch", "version": torch.__version__, "model": "cnn-32-64-256", "batch": a.batch,
        "optimizer": "momentum", "threads": a.threads, "examples": n, "reps": a.reps,
        "examples_per_s": round(rate, 1), "ms_per_step": round(1e3 * n / rate / steps, 3),
        "final_loss": round(epoch_loss, 5), "examples_per_s_reps": [round(r, 1) for r in rates],
        "mkldnn": a.mkldnn}))


main()
