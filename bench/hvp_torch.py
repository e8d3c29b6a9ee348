"""PyTorch peer of bench/hvp_cost.cpp: one Hessian-vector product by double backward
against one gradient, MLP 784-256-256-10 (ReLU, cross-entropy), same batch and threads.
Prints one JSON line. Run with /usr/bin/python3 (Debian's python3-torch)."""
import argparse, json, statistics, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=1000)
p.add_argument("--reps", type=int, default=20)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                          torch.nn.Linear(256, 10))
params = list(net.parameters())
x = torch.randn(a.batch, 784)
y = torch.randint(0, 10, (a.batch,))
v = [torch.randn_like(q) for q in params]
lossf = torch.nn.CrossEntropyLoss()

def grad():
    g = torch.autograd.grad(lossf(net(x), y), params)

def hvp():
    g = torch.autograd.grad(lossf(net(x), y), params, create_graph=True)
    dot = sum((gi * vi).sum() for gi, vi in zip(g, v))
    torch.autograd.grad(dot, params)

def timed(f):
    f()
    t = []
    for _ in range(a.reps):
        t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return statistics.median(t)

# Many products at one point, as PyHessian does: the gradient graph built once
# (create_graph), each product one backward through it.
g_kept = torch.autograd.grad(lossf(net(x), y), params, create_graph=True)
def hvp_reuse():
    torch.autograd.grad(g_kept, params, grad_outputs=v, retain_graph=True)
g, h, hr = timed(grad), timed(hvp), timed(hvp_reuse)
print(json.dumps({"impl": "pytorch", "version": torch.__version__, "batch": a.batch, "threads": a.threads,
                  "grad_ms": round(g * 1e3, 3), "hvp_ms": round(h * 1e3, 3), "hvp_over_grad": round(h / g, 3),
                  "hvp_reuse_ms": round(hr * 1e3, 3), "hvp_reuse_over_grad": round(hr / g, 3)}))
