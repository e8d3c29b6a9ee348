"""PyTorch peer of bench/lbfgs.cpp: torch.optim.LBFGS (line_search_fn="strong_wolfe",
history_size 10, lr 1) on the same full-batch problem: the same start weights
(EXPORT/init.safetensors, header parsed here), the same examples (EXPORT/x.f32, y.i32), the
mean cross-entropy of softmax regression or an MLP with ReLU, float32.
    lbfgs_torch.py EXPORT [--iterations K] [--threads T] [--reps R] [--history M] [--trace]
--trace: one untimed run, the loss after each of K iterations (one optimizer.step with
max_iter = 1 per iteration; LBFGS keeps its state between calls). Otherwise: R timed runs of
one optimizer.step(closure) with max_iter = K (tolerances 0, so exactly K iterations), the
median and minimum seconds. Prints one JSON line. Run with /usr/bin/python3.
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
p.add_argument("export")
p.add_argument("--iterations", type=int, default=100)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--reps", type=int, default=3)
p.add_argument("--history", type=int, default=10)
p.add_argument("--trace", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)

with open(a.export + "/init.safetensors", "rb") as f:
    blob = f.read()
(n,) = struct.unpack("<Q", blob[:8])
header = json.loads(blob[8:8 + n])
header.pop("__metadata__", None)
data = blob[8 + n:]
init = {}
for name, t in header.items():
    b, e = t["data_offsets"]
    init[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).reshape(t["shape"]).copy())
layers = sorted({int(m.group(1)) for k in init for m in [re.match(r"layers\.(\d+)\.weight", k)] if m})
dim_in = init["layers.%d.weight" % layers[0]].shape[1]
x = torch.from_numpy(np.fromfile(a.export + "/x.f32", dtype=np.float32).reshape(-1, dim_in).copy())
y = torch.from_numpy(np.fromfile(a.export + "/y.i32", dtype=np.int32).astype(np.int64))
model = "softmax" if len(layers) == 1 else "mlp%d" % init["layers.%d.weight" % layers[0]].shape[0]


def fresh():
    params = []
    for i in layers:
        params += [init["layers.%d.weight" % i].clone().requires_grad_(), init["layers.%d.bias" % i].clone().requires_grad_()]
    return params


def loss_of(params):
    h = x
    for k in range(0, len(params), 2):
        h = h @ params[k].T + params[k + 1]
        if k + 2 < len(params):
            h = torch.relu(h)
    return F.cross_entropy(h, y)


def make(params, max_iter):
    return torch.optim.LBFGS(params, lr=1, max_iter=max_iter, max_eval=max_iter * 25, history_size=a.history,
                             tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")


evaluations = [0]


def closure_for(params, opt):
    def closure():
        evaluations[0] += 1
        opt.zero_grad()
        loss = loss_of(params)
        loss.backward()
        return loss
    return closure


if a.trace:
    params = fresh()
    opt = make(params, 1)
    closure = closure_for(params, opt)
    losses = []
    for _ in range(a.iterations):
        opt.step(closure)
        with torch.no_grad():
            losses.append(float(loss_of(params)))
    print(json.dumps({"impl": "pytorch", "model": model, "examples": int(x.shape[0]), "losses": losses}))
else:
    seconds = []
    for _ in range(a.reps):
        evaluations[0] = 0
        t0 = time.perf_counter()
        params = fresh()
        opt = make(params, a.iterations)
        opt.step(closure_for(params, opt))
        seconds.append(time.perf_counter() - t0)
        with torch.no_grad():
            loss = float(loss_of(params))
    print(json.dumps({"impl": "pytorch", "model": model, "threads": a.threads, "iterations": a.iterations,
                      "evaluations": evaluations[0], "loss": loss, "seconds": statistics.median(seconds),
                      "seconds_min": min(seconds)}))
