#!/usr/bin/env bash
# Hessian-vector product cost against one gradient: descent (forward-over-reverse) and
# PyTorch (double backward), same model, batch and threads, in one run.
#   bench/hvp.sh [threads]     (default: 2)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
scripts/install-deps --bench
scripts/build >/dev/null
d=$(OMP_NUM_THREADS=$threads build/bin/hvp_cost --threads "$threads")
t=$(/usr/bin/python3 bench/hvp_torch.py --threads "$threads")
echo "$d"
echo "$t"
/usr/bin/python3 - "$d" "$t" <<'PY'
import json, sys
d, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"Hv / gradient:  descent {d['hvp_over_grad']:.2f}x Hv alone (multiply-adds {d['macs_hvp_over_grad']:.2f}x), "
      f"{d['hvp_with_grad_over_grad']:.2f}x with the gradient (multiply-adds {d['macs_hvp_with_grad_over_grad']:.2f}x)   "
      f"pytorch {t['hvp_over_grad']:.2f}x (double backward: the gradient comes with it)")
print(f"                reusing the forward: descent {d['hvp_reuse_over_grad']:.2f}x   "
      f"GFLOP/s: gradient {d['grad_gflops']:.0f}, Hv alone {d['hvp_gflops']:.0f}, with the gradient {d['hvp_with_grad_gflops']:.0f}")
print(f"Hv at a fixed point (gradient kept): descent {d['hvp_at_gradient_ms']:.2f} ms   pytorch {t['hvp_reuse_ms']:.2f} ms   "
      f"pytorch/descent = {t['hvp_reuse_ms'] / d['hvp_at_gradient_ms']:.2f}")
print(f"Hv wall time:   descent {d['hvp_ms']:.2f} ms   pytorch {t['hvp_ms']:.2f} ms   "
      f"pytorch/descent = {t['hvp_ms'] / d['hvp_ms']:.2f}")
print(f"gradient time:  descent {d['grad_ms']:.2f} ms   pytorch {t['grad_ms']:.2f} ms   "
      f"pytorch/descent = {t['grad_ms'] / d['grad_ms']:.2f}")
PY
