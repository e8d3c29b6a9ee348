"""PyTorch peer of bench/optim_step.cpp: optimizer.step() on one float32 tensor of n = 10M
parameters with a fixed gradient, for each optimizer with foreach=True and foreach=False,
same threads. Prints one JSON line (milliseconds per step, median). Run with
/usr/bin/python3 (Debian's python3-torch)."""
import argparse, json, statistics, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=10_000_000)
p.add_argument("--reps", type=int, default=20)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)

cases = {
    "sgd": lambda ps, fe: torch.optim.SGD(ps, lr=1e-3, foreach=fe),
    "momentum": lambda ps, fe: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=fe),
    "nesterov_pytorch": lambda ps, fe: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True, foreach=fe),
    "adagrad": lambda ps, fe: torch.optim.Adagrad(ps, lr=1e-3, foreach=fe),
    "rmsprop": lambda ps, fe: torch.optim.RMSprop(ps, lr=1e-3, foreach=fe),
    "adam": lambda ps, fe: torch.optim.Adam(ps, lr=1e-3, foreach=fe),
    "adamw": lambda ps, fe: torch.optim.AdamW(ps, lr=1e-3, foreach=fe),
}

def timed(f):
    f(); f()
    t = []
    for _ in range(a.reps):
        t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return statistics.median(t)

out = {"impl": "pytorch", "version": torch.__version__, "n": a.n, "threads": a.threads, "steps": {}}
for name, make in cases.items():
    for fe in (True, False):
        w = torch.nn.Parameter(torch.full((a.n,), 0.5))
        w.grad = torch.full((a.n,), 1e-3)
        opt = make([w], fe)
        with torch.no_grad():
            ms = timed(opt.step) * 1e3
        out["steps"][f"{name}{'_foreach' if fe else ''}"] = {"ms": round(ms, 3)}
print(json.dumps(out))
