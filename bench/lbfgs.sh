#!/usr/bin/env bash
# Full-batch L-BFGS: descent (optim::NetworkObjective + lbfgs, strong Wolfe, m = 10) against
# torch.optim.LBFGS(line_search_fn="strong_wolfe", history_size=10), time to the same
# training loss, on softmax regression and an MLP 784-64-10 (ReLU) over the first 10,000
# Fashion-MNIST training examples, from the same start weights (bench/lbfgs.cpp writes them
# and the examples; bench/lbfgs_torch.py reads them).
#   bench/lbfgs.sh [ITERATIONS]    (default 100)
# The target loss: both sides run ITERATIONS iterations untimed (traces); the target is the
# larger of the two final losses (both reach it), and each side's iteration count is the
# first iteration at or below it. Then each side is timed for exactly that many iterations,
# PyTorch at 1 and 2 threads (the faster one counts), descent at 1 and 2, alternating sides
# so that a loaded machine's load falls on both. Prints the ratio PyTorch / descent.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-100}
scripts/build >/dev/null
cmake --build build --target lbfgs >/dev/null
export_dir=$(mktemp -d)
trap 'rm -rf "$export_dir"' EXIT
for hidden in "" 64; do
  dir="$export_dir/h$hidden"
  d_trace=$(OMP_NUM_THREADS=1 build/bin/lbfgs "$dir" --hidden "$hidden" --iterations "$iterations" --threads 1 --trace)
  t_trace=$(/usr/bin/python3 bench/lbfgs_torch.py "$dir" --iterations "$iterations" --threads 1 --trace)
  read -r target kd kt < <(/usr/bin/python3 - "$d_trace" "$t_trace" <<'PY'
import json, sys
d, t = json.loads(sys.argv[1])["losses"], json.loads(sys.argv[2])["losses"]
target = max(d[-1], t[-1])
kd = next(i + 1 for i, v in enumerate(d) if v <= target)
kt = next(i + 1 for i, v in enumerate(t) if v <= target)
print(f"{target:.9g} {kd} {kt}")
PY
)
  rows=()
  for rep in 1 2; do  # alternate: descent, pytorch, descent, pytorch ...
    for threads in 1 2; do
      rows+=("$(OMP_NUM_THREADS=$threads build/bin/lbfgs "$dir" --hidden "$hidden" --iterations "$kd" --threads "$threads" --reps 2)")
      rows+=("$(/usr/bin/python3 bench/lbfgs_torch.py "$dir" --iterations "$kt" --threads "$threads" --reps 2)")
    done
  done
  printf '%s\n' "${rows[@]}"
  /usr/bin/python3 - "$target" "${rows[@]}" <<'PY'
import json, sys
target = float(sys.argv[1])
rows = [json.loads(s) for s in sys.argv[2:]]
best = {}
for r in rows:
    key = (r["impl"], r["threads"])
    best[key] = min(best.get(key, 1e30), r["seconds_min"])
d = min((v, k[1]) for k, v in best.items() if k[0] == "descent")
t = min((v, k[1]) for k, v in best.items() if k[0] == "pytorch")
dr = next(r for r in rows if r["impl"] == "descent")
tr = next(r for r in rows if r["impl"] == "pytorch")
print(f"{dr['model']}: target training loss {target:.6g}")
print(f"  descent  {dr['iterations']:4d} iterations, {dr['evaluations']:4d} evaluations, {d[0]:.3f} s ({d[1]} thread(s)), loss {dr['loss']:.6g}")
print(f"  PyTorch  {tr['iterations']:4d} iterations, {tr['evaluations']:4d} evaluations, {t[0]:.3f} s ({t[1]} thread(s)), loss {tr['loss']:.6g}")
print(f"  PyTorch / descent = {t[0] / d[0]:.2f}x")
PY
done
