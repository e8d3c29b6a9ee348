#!/usr/bin/python3
"""The interpolation curve of Goodfellow, Vinyals & Saxe (2015) computed by PyTorch: the
reference for descent's diag::interpolate (tests/diag/interpolation_reference_test.cpp).

A float64 MLP 5-8-8-3 with ReLU (descent's nn::mlp layout: layers.0, layers.2, layers.4, each
weight [out, in]); theta_0 drawn here (He-uniform-like, biases 0.01), theta* after 300 steps of
full-batch gradient descent (lr 0.2) from it on 64 examples of a random teacher problem. Along
theta(alpha) = (1 - alpha) theta_0 + alpha theta* for alpha on descent's grid (41 points over
[-0.25, 1.25], with 0 and 1 added), the mean cross-entropy (F.cross_entropy) and the 0-1 error
(argmax) on the 64 examples and on 32 others ("validation").

    /usr/bin/python3 tests/reference/interpolation_reference.py [OUT.json]

writes tests/reference/fixtures/interpolation.json by default (all numbers as Python floats:
repr round-trips float64 exactly).
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(2015)
dtype = torch.float64
sizes = [5, 8, 8, 3]


def init_params():
    p = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = (6.0 / n_in) ** 0.5
        p["layers.%d.weight" % (2 * i)] = (torch.rand(n_out, n_in, dtype=dtype) * 2 - 1) * bound
        p["layers.%d.bias" % (2 * i)] = torch.full((n_out,), 0.01, dtype=dtype)
    return p


def forward(p, x):
    h = x
    layers = len(sizes) - 1
    for i in range(layers):
        h = h @ p["layers.%d.weight" % (2 * i)].T + p["layers.%d.bias" % (2 * i)]
        if i + 1 < layers:
            h = torch.relu(h)
    return h


def problem(n):
    teacher = torch.randn(5, 3, dtype=dtype)
    x = torch.randn(n, 5, dtype=dtype)
    y = torch.argmax(x @ teacher + 0.5 * torch.randn(n, 3, dtype=dtype), dim=1)
    return x, y


x_all, y_all = problem(96)
x_train, y_train, x_val, y_val = x_all[:64], y_all[:64], x_all[64:], y_all[64:]

theta0 = init_params()
theta = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
for _ in range(300):
    loss = F.cross_entropy(forward(theta, x_train), y_train)
    grads = torch.autograd.grad(loss, list(theta.values()))
    with torch.no_grad():
        for v, g in zip(theta.values(), grads):
            v -= 0.2 * g
theta_star = {k: v.detach() for k, v in theta.items()}

points = 41
alpha = [-0.25 + 1.5 * i / (points - 1) if i + 1 < points else 1.25 for i in range(points)]
for end in (0.0, 1.0):
    near = [i for i, a in enumerate(alpha) if abs(a - end) < 1e-12]
    if near:
        alpha[near[0]] = end
    else:
        alpha.append(end)
alpha.sort()


def curve(x, y):
    loss, error = [], []
    with torch.no_grad():
        for a in alpha:
            p = {k: (1 - a) * theta0[k] + a * theta_star[k] for k in theta0}
            logits = forward(p, x)
            loss.append(F.cross_entropy(logits, y).item())
            error.append((torch.argmax(logits, dim=1) != y).double().mean().item())
    return loss, error


train_loss, train_error = curve(x_train, y_train)
val_loss, val_error = curve(x_val, y_val)


def flat(p):
    return {k: v.reshape(-1).tolist() for k, v in p.items()}


out = {
    "generator": "tests/reference/interpolation_reference.py (torch %s)" % torch.__version__,
    "sizes": sizes,
    "activation": "relu",
    "theta_0": flat(theta0),
    "theta_star": flat(theta_star),
    "train_x": x_train.reshape(-1).tolist(),
    "train_labels": y_train.tolist(),
    "validation_x": x_val.reshape(-1).tolist(),
    "validation_labels": y_val.tolist(),
    "alpha": alpha,
    "train_loss": train_loss,
    "train_error": train_error,
    "validation_loss": val_loss,
    "validation_error": val_error,
}
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                                                           "interpolation.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("train loss %.4f (alpha 0) -> %.4f (alpha 1); wrote %s" % (train_loss[alpha.index(0.0)], train_loss[alpha.index(1.0)], path))
