#!/usr/bin/python3
"""PyTorch's figures for the diagnostics' reference fixture (tests/reference/hessian_fixture.json).

A small ReLU MLP (10-12-8-4, 272 parameters) with seeded float64 weights on 50 seeded
examples; the mean cross-entropy's Hessian is built column by column by double backward
(torch.autograd.grad of the gradient along each unit vector), then:
  lambda_max, lambda_min    torch.linalg.eigvalsh of the dense Hessian
  trace                     the sum of its diagonal
  power_lambda_max          PyHessian's method: power iteration with double-backward Hv
and, from every example's gradient (one backward each), tr(Sigma) = (1/N) sum |g_i - G|^2
and the noise scale tr(Sigma) / |G|^2 (McCandlish et al. 2018). All in float64.
tests/diag/reference_fixture_test.cpp builds the same network in descent from the fixture's
weights and examples and compares (it needs no torch: the fixture is committed).

    /usr/bin/python3 tests/reference/hessian_reference.py            # rewrites the fixture
    /usr/bin/python3 tests/reference/hessian_reference.py --check    # recomputes, compares with it

--check exits 0 when the committed fixture agrees with a fresh computation (1e-10
relative), 1 otherwise, 77 (SKIP) when torch or numpy cannot be imported.
"""
import json
import os
import sys

SKIP = 77
try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print("SKIP: %s is not importable under %s (scripts/install-deps --bench installs python3-torch and python3-numpy)"
          % (e.name, sys.executable))
    sys.exit(SKIP)

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hessian_fixture.json")
SIZES = [10, 12, 8, 4]
N = 50


def problem():
    rng = np.random.default_rng(20261206)
    weights = []  # descent's arena order: layers.0.weight [12, 10], layers.0.bias, layers.2..., layers.4...
    for i in range(len(SIZES) - 1):
        fan_in, fan_out = SIZES[i], SIZES[i + 1]
        bound = np.sqrt(6.0 / fan_in)
        weights.append(("layers.%d.weight" % (2 * i), rng.uniform(-bound, bound, (fan_out, fan_in))))
        weights.append(("layers.%d.bias" % (2 * i), rng.uniform(-0.2, 0.2, fan_out)))
    x = rng.normal(size=(N, SIZES[0]))
    y = rng.integers(0, SIZES[-1], N)
    return weights, x, y


def loss_of(params, x, y):
    h = torch.from_numpy(x)
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]
        if i + 2 < len(params):
            h = torch.relu(h)
    return F.cross_entropy(h, torch.from_numpy(y))


def compute():
    torch.set_default_dtype(torch.float64)
    weights, x, y = problem()
    params = [torch.tensor(w, requires_grad=True) for _, w in weights]
    dim = sum(p.numel() for p in params)
    loss = loss_of(params, x, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])

    def hvp(v):  # double backward: d/dtheta (g . v)
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat_grad, params, grad_outputs=v, retain_graph=True)])

    eye = torch.eye(dim)
    hessian = torch.stack([hvp(eye[j]) for j in range(dim)], dim=1)
    asym = float((hessian - hessian.T).abs().max())
    eig = torch.linalg.eigvalsh(0.5 * (hessian + hessian.T))

    # PyHessian's power iteration (tol 1e-3 relative change, at most 100 iterations), here to 1e-12.
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(dim, generator=gen)
    v /= v.norm()
    eigenvalue = None
    for _ in range(2000):
        hv = hvp(v)
        new = float(v @ hv)
        v = hv / hv.norm()
        if eigenvalue is not None and abs(new - eigenvalue) <= 1e-12 * abs(eigenvalue):
            eigenvalue = new
            break
        eigenvalue = new

    # Per-example gradients: tr(Sigma) and the noise scale.
    g_full = flat_grad.detach()
    per = []
    for i in range(N):
        li = loss_of(params, x[i:i + 1], y[i:i + 1])
        per.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(li, params)]))
    per = torch.stack(per)
    trace_sigma = float(((per - g_full) ** 2).sum(dim=1).mean())

    return {
        "comment": "written by tests/reference/hessian_reference.py (PyTorch %s, float64); read by "
                   "tests/diag/reference_fixture_test.cpp" % torch.__version__,
        "sizes": SIZES,
        "activation": "relu",
        "parameters": [{"name": n, "shape": list(w.shape), "values": w.reshape(-1).tolist()} for n, w in weights],
        "x": x.reshape(-1).tolist(),
        "labels": [int(t) for t in y],
        "examples": N,
        "dim": dim,
        "loss": float(loss),
        "gradient_norm": float(g_full.norm()),
        "lambda_max": float(eig[-1]),
        "lambda_min": float(eig[0]),
        "eigenvalues_top": [float(t) for t in eig.flip(0)[:5]],
        "eigenvalues_bottom": [float(t) for t in eig[:5]],
        "trace": float(torch.diagonal(hessian).sum()),
        "hessian_max_asymmetry": asym,
        "power_lambda_max": eigenvalue,
        "trace_sigma": trace_sigma,
        "noise_scale": trace_sigma / float(g_full.norm()) ** 2,
    }


def main():
    fresh = compute()
    if "--check" not in sys.argv[1:]:
        with open(FIXTURE, "w") as f:
            json.dump(fresh, f, indent=1)
            f.write("\n")
        print("wrote %s: lambda_max %.12g, lambda_min %.12g, trace %.12g, noise scale %.12g"
              % (FIXTURE, fresh["lambda_max"], fresh["lambda_min"], fresh["trace"], fresh["noise_scale"]))
        return 0
    with open(FIXTURE) as f:
        stored = json.load(f)
    bad = []
    for key in ["loss", "gradient_norm", "lambda_max", "lambda_min", "trace", "trace_sigma", "noise_scale"]:
        a, b = stored[key], fresh[key]
        if abs(a - b) > 1e-10 * max(abs(a), abs(b), 1e-300):
            bad.append("%s: fixture %.17g, PyTorch now %.17g" % (key, a, b))
    if stored["x"] != fresh["x"] or stored["labels"] != fresh["labels"]:
        bad.append("the examples differ (numpy's generator changed?)")
    for line in bad:
        print("MISMATCH " + line)
    print("hessian fixture: %s" % ("agrees" if not bad else "%d mismatches" % len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
