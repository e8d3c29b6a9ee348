#!/usr/bin/python3
"""Writes tests/reference/second_order_scipy.json: trajectories of scipy.optimize's BFGS,
L-BFGS-B (unconstrained), CG (Polak-Ribiere+) and Newton-CG on the lab's Rosenbrock and
ill-conditioned quadratic (include/descent/optim/test_functions.hpp), for
tests/optim/second_order_test.cpp, which replays each step's length and checks that
descent's method takes the same direction from the same history.

Run with Debian's python3-scipy:  /usr/bin/python3 tests/reference/second_order_reference.py
The C++ test reads the committed JSON and does not need SciPy.
"""
import json
import os
import sys

import numpy as np
import scipy
from scipy import optimize

KAPPA = 10.0


def rosenbrock(p):
    x, y = p
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_grad(p):
    x, y = p
    b = y - x * x
    return np.array([-2 * (1 - x) - 400 * x * b, 200 * b])


def rosenbrock_hess(p):
    x, y = p
    return np.array([[2 - 400 * y + 1200 * x * x, -400 * x], [-400 * x, 200.0]])


def quadratic(p):
    return 0.5 * (p[0] ** 2 + KAPPA * p[1] ** 2)


def quadratic_grad(p):
    return np.array([p[0], KAPPA * p[1]])


def quadratic_hess(p):
    return np.array([[1.0, 0.0], [0.0, KAPPA]])


FUNCTIONS = {
    "rosenbrock": (rosenbrock, rosenbrock_grad, rosenbrock_hess, [-1.2, 1.0]),
    "quadratic": (quadratic, quadratic_grad, quadratic_hess, [-1.0, 1.0]),
}
METHODS = ["BFGS", "L-BFGS-B", "CG", "Newton-CG"]


def run(method, name):
    f, g, h, x0 = FUNCTIONS[name]
    path = [list(map(float, x0))]
    kwargs = {}
    if method == "Newton-CG":
        kwargs["hess"] = h
    res = optimize.minimize(f, np.array(x0, dtype=np.float64), jac=g, method=method,
                            callback=lambda xk: path.append([float(v) for v in xk]),
                            options={"gtol": 1e-10} if method in ("BFGS", "CG") else {}, **kwargs)
    return {"function": name, "method": method, "start": x0, "trajectory": path,
            "x": [float(v) for v in res.x], "f": float(res.fun), "iterations": int(res.nit)}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "second_order_scipy.json")
    runs = [run(m, n) for m in METHODS for n in FUNCTIONS]
    with open(out, "w") as fh:
        json.dump({"scipy": scipy.__version__, "kappa": KAPPA, "runs": runs}, fh, indent=1)
        fh.write("\n")
    for r in runs:
        print(f"{r['method']:10s} {r['function']:10s} {r['iterations']:4d} iterations  x {r['x']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
