"""PyTorch peer of bench/train_mlp.cpp: the same MLP (nn.Sequential of Linear/ReLU), the
same Fashion-MNIST examples scaled to [0, 1] and preloaded as tensors, the same batch,
minibatches in order copied into a batch buffer, CrossEntropyLoss, SGD with momentum 0.9,
one epoch per repetition, median examples/s. Prints one JSON line with the same fields.
Run with /usr/bin/python3 (Debian's python3-torch).

The levers (bench/run --torch-levers sweeps them; docs/performance.md says which won):
  --mkldnn 0|1         torch.backends.mkldnn.enabled
  --interop N          torch.set_num_interop_threads (0: leave the default)
  --set-to-none 0|1    optimizer.zero_grad(set_to_none=...)
  --foreach 0|1        the optimizer's multi-tensor (foreach) implementation
  --flush-denormal 0|1 torch.set_flush_denormal
  --autocast bf16      forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)
                       (PyTorch's mixed precision, the peer of descent's model.dtype = "bf16")
plus the environment (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, LD_PRELOAD, GLIBC_TUNABLES),
which bench/run sets."""
import time

T_ENTRY = time.perf_counter()  # before `import torch`: startup includes it

import argparse, json, os, resource, statistics
import torch

from torch_common import DATA, InOrderBatches, load_train, set_threads


def process_age_s():
    """Age of this process from /proc/self/stat's start time (clock ticks since boot) and
    /proc/uptime: includes the interpreter's own startup. Resolution 10 ms; -1 if unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return -1.0


def make_optimizer(name, params, lr, foreach):
    """The optimizers of train_mlp.cpp's make_optimizer, by the same names."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, foreach=foreach)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=foreach)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=foreach)
    raise SystemExit(f"torch_mlp: unknown --optimizer {name} (sgd, momentum, adam)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="784,256,256,10")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--optimizer", default="momentum")
    p.add_argument("--lr", type=float, default=0.0, help="default 0.01, 0.001 for adam")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--examples", type=int, default=0)
    p.add_argument("--data", default=DATA)
    p.add_argument("--mkldnn", type=int, default=1)
    p.add_argument("--interop", type=int, default=1)
    p.add_argument("--set-to-none", type=int, default=1)
    p.add_argument("--foreach", type=int, default=0)
    p.add_argument("--flush-denormal", type=int, default=0)
    p.add_argument("--autocast", default="none", choices=["none", "bf16"])
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    lr = a.lr if a.lr > 0 else (0.001 if a.optimizer == "adam" else 0.01)

    set_threads(a.threads, interop=a.interop, mkldnn=a.mkldnn, flush_denormal=a.flush_denormal)
    torch.manual_seed(1)

    n, x_all, y_all = load_train(a.data, a.examples, "torch_mlp")
    if x_all.shape[1] != sizes[0]:
        raise SystemExit(f"torch_mlp: the data has {x_all.shape[1]} features, --sizes starts with {sizes[0]}")

    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    lossf = torch.nn.CrossEntropyLoss()
    opt = make_optimizer(a.optimizer, net.parameters(), lr, bool(a.foreach))
    batches = InOrderBatches(x_all, y_all, a.batch)
    xb, yb, steps, load = batches.xb, batches.yb, batches.steps, batches.load
    set_to_none = bool(a.set_to_none)

    autocast = a.autocast == "bf16"

    def step(b):
        opt.zero_grad(set_to_none=set_to_none)
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = lossf(net(xb[:b]), yb[:b])
        else:
            loss = lossf(net(xb[:b]), yb[:b])
        loss.backward()
        opt.step()
        return loss.item()

    startup = time.perf_counter() - T_ENTRY
    age = process_age_s()
    first_step_unix = time.time()
    f0 = time.perf_counter()
    step(load(0))
    first_step = time.perf_counter() - f0
    for s in range(1, min(10, steps)):
        step(load(s))

    rates, cpu_rates, epoch_loss = [], [], 0.0
    for _ in range(a.reps):
        loss_sum = 0.0
        c0 = time.process_time()
        t0 = time.perf_counter()
        for s in range(steps):
            b = load(s)
            loss_sum += step(b) * b
        rates.append(n / (time.perf_counter() - t0))
        cpu_rates.append(n / (time.process_time() - c0))
        epoch_loss = loss_sum / n
    rate = statistics.median(rates)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({
        "impl": "pytorch", "version": torch.__version__, "sizes": sizes, "batch": a.batch, "optimizer": a.optimizer, "lr": lr,
        "threads": a.threads, "autocast": a.autocast, "examples": n, "reps": a.reps, "steps_per_epoch": steps,
        "examples_per_s": round(rate, 1),
        "examples_per_cpu_s": round(statistics.median(cpu_rates), 1), "ms_per_step": round(1e3 * n / rate / steps, 4),
        "peak_rss_mb": round(rss_mb, 1), "startup_ms": round(1e3 * startup, 1),
        "process_age_at_first_step_ms": round(1e3 * age) if age >= 0 else -1,
        "first_step_unix": round(first_step_unix, 6), "first_step_ms": round(1e3 * first_step, 3),
        "final_loss": round(epoch_loss, 5), "examples_per_s_reps": [round(r, 1) for r in rates],
        "levers": {"mkldnn": a.mkldnn, "interop": a.interop, "set_to_none": a.set_to_none, "foreach": a.foreach,
                   "flush_denormal": a.flush_denormal, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                   "LD_PRELOAD": os.environ.get("LD_PRELOAD"), "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES")},
    }))


main()
