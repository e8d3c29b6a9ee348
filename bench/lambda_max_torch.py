"""PyTorch peer of bench/lambda_max.cpp: lambda_max by PyHessian's method (Yao et al. 2020,
pyhessian/hessian.py `eigenvalues`), reimplemented here: the gradient with create_graph
once, then power iteration with double-backward Hessian-vector products, stopping when the
estimate changes by less than tol relative (|new - old| / (|old| + 1e-6) < tol), at most
max_iter products. Same weights (the run's model.safetensors, header parsed here) and the
same examples (EXPORT/x.f32, EXPORT/y.i32, written by lambda_max). Times the whole method
(forward, gradient graph, iterations), median of reps. Prints one JSON line.
Run with /usr/bin/python3 (Debian's python3-torch).
    lambda_max_torch.py MODEL EXPORT [--threads T] [--tol T] [--reps R] [--max-iter M]
"""
import argparse
import json
import re
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("export")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--tol", type=float, default=1e-3)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--max-iter", type=int, default=1000)
p.add_argument("--reference", type=float, default=None)
p.add_argument("--rule", choices=["change", "error"], default="change",
               help="change: PyHessian's rule; error: stop within tol of --reference (the same accuracy as descent's)")
a = p.parse_args()
torch.set_num_threads(a.threads)

with open(a.model, "rb") as f:
    blob = f.read()
(n,) = struct.unpack("<Q", blob[:8])
header = json.loads(blob[8:8 + n])
header.pop("__metadata__", None)
data = blob[8 + n:]
dtypes = {"F32": np.float32, "F64": np.float64}
tensors = {}
for name, t in header.items():
    b, e = t["data_offsets"]
    tensors[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dtypes[t["dtype"]]).reshape(t["shape"]).copy())
# An MLP: layers.<i>.weight / .bias, ReLU between (the default model).
layers = sorted({int(m.group(1)) for k in tensors for m in [re.match(r"layers\.(\d+)\.weight", k)] if m})
params = []
for i in layers:
    params += [tensors["layers.%d.weight" % i].requires_grad_(), tensors["layers.%d.bias" % i].requires_grad_()]
dim_in = params[0].shape[1]
x = torch.from_numpy(np.fromfile(a.export + "/x.f32", dtype=np.float32).reshape(-1, dim_in).copy()).to(params[0].dtype)
y = torch.from_numpy(np.fromfile(a.export + "/y.i32", dtype=np.int32).astype(np.int64))


def forward():
    h = x
    for k in range(0, len(params), 2):
        h = h @ params[k].T + params[k + 1]
        if k + 2 < len(params):
            h = torch.relu(h)
    return F.cross_entropy(h, y)


def power_iteration():
    torch.manual_seed(1)
    grads = torch.autograd.grad(forward(), params, create_graph=True)
    v = [torch.randn_like(q) for q in params]
    norm = torch.sqrt(sum((vi * vi).sum() for vi in v))
    v = [vi / norm for vi in v]
    eigenvalue, iters = None, 0
    for _ in range(a.max_iter):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, only_inputs=True, retain_graph=True)
        iters += 1
        new = float(sum((h * vi).sum() for h, vi in zip(hv, v)))
        norm = torch.sqrt(sum((h * h).sum() for h in hv))
        v = [h / norm for h in hv]
        if a.rule == "error":
            if abs(new - a.reference) <= a.tol * abs(a.reference):
                eigenvalue = new
                break
        elif eigenvalue is not None and abs(new - eigenvalue) / (abs(eigenvalue) + 1e-6) < a.tol:
            eigenvalue = new
            break
        eigenvalue = new
    return eigenvalue, iters


power_iteration()  # warm-up
times, cpu = [], []
for _ in range(a.reps):
    t0, c0 = time.perf_counter(), time.process_time()
    estimate, iters = power_iteration()
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)  # the process's CPU time: steadier than wall time on a loaded machine
out = {"impl": "pytorch-power-iteration", "rule": a.rule, "seconds_min": round(min(times), 4), "version": torch.__version__, "threads": a.threads, "tol": a.tol,
       "products": iters, "lambda_max": estimate, "examples": int(x.shape[0]),
       "seconds": round(statistics.median(times), 4), "seconds_all": [round(t, 4) for t in times],
       "cpu_seconds_min": round(min(cpu), 4), "cpu_seconds": round(statistics.median(cpu), 4)}
if a.reference:
    out["relative_error"] = abs(estimate - a.reference) / abs(a.reference)
print(json.dumps(out))
