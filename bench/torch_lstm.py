"""PyTorch peer of bench/train_lstm.cpp: Fashion-MNIST images read row by row (28 steps of
28 pixels, scaled to [0, 1] and preloaded), torch.nn.LSTM (or GRU / RNN) with
batch_first=True, a Linear head on the last hidden state, CrossEntropyLoss, SGD with
momentum 0.9; minibatches in order copied into a batch buffer, one pass over N examples per
repetition, median examples/s. Prints one JSON line with the same fields.
Run with /usr/bin/python3 (Debian's python3-torch)."""
import argparse, json, statistics, time

import torch

from torch_common import DATA, InOrderBatches, load_train, set_threads

T, D = 28, 28


class Net(torch.nn.Module):
    def __init__(self, cell, hidden):
        super().__init__()
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = kind(D, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.rnn(x.view(x.shape[0], T, D))
        return self.head(out[:, -1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--examples", type=int, default=0)
    p.add_argument("--data", default=DATA)
    a = p.parse_args()

    set_threads(a.threads, interop=1)
    torch.manual_seed(1)
    n, x_all, y_all = load_train(a.data, a.examples, "torch_lstm")

    net = Net(a.cell, a.hidden)
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

    for s in range(min(5, steps)):
        step(load(s))
    rates, pass_loss = [], 0.0
    for _ in range(a.reps):
        loss_sum = 0.0
        t0 = time.perf_counter()
        for s in range(steps):
            b = load(s)
            loss_sum += step(b) * b
        rates.append(n / (time.perf_counter() - t0))
        pass_loss = loss_sum / n
    rate = statistics.median(rates)
    print(json.dumps({
        "impl": "pytorch", "version": torch.__version__, "cell": a.cell, "steps": T, "input": D, "hidden": a.hidden,
        "batch": a.batch, "optimizer": "momentum", "threads": a.threads, "examples": n, "reps": a.reps,
        "steps_per_pass": steps, "examples_per_s": round(rate, 1), "ms_per_step": round(1e3 * n / rate / steps, 4),
        "final_loss": round(pass_loss, 5), "examples_per_s_reps": [round(r, 1) for r in rates],
    }))


main()
