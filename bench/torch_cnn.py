"""PyTorch peer of bench/train_cnn.cpp: the same CNN (conv 32 5x5 pad 2, relu, max-pool 2,
conv 64 5x5 pad 2, relu, max-pool 2, fc 256, relu, fc 10), the same Fashion-MNIST examples
scaled to [0, 1] and preloaded, the same batch, minibatches in order copied into a batch
buffer, CrossEntropyLoss, SGD with momentum 0.9, one pass over --examples examples per
repetition, median examples/s. Prints one JSON line with the same fields.
Run with /usr/bin/python3 (Debian's python3-torch), e.g.
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/torch_cnn.py --threads 2 --examples 10000"""
import argparse, json, statistics, time

import torch

from torch_common import DATA, InOrderBatches, load_train, set_threads


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

    set_threads(a.threads, interop=1, mkldnn=a.mkldnn)
    torch.manual_seed(1)

    n, x_all, y_all = load_train(a.data, a.examples, "torch_cnn")

    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 28, 28)),
        torch.nn.Conv2d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 7 * 7, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))
    lossf = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
    batches = InOrderBatches(x_all, y_all, a.batch)
    xb, yb, steps, load = batches.xb, batches.yb, batches.steps, batches.load

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
