#!/usr/bin/env bash
# lambda_max of the default MLP (examples/fashion_mlp.toml trained for one epoch) on its
# first 1000 training examples: descent's Lanczos against PyHessian's power iteration
# (double backward in PyTorch), same weights, same examples, same stopping tolerance; each
# side at 1 and 2 threads, the best of each compared.
#   bench/lambda_max.sh [RUN_DIR] [tol]     (default: trains runs/bench_lambda_max; tol 1e-3)
#   THREADS="1" bench/lambda_max.sh ...     (the thread counts tried; default "1 2")
set -euo pipefail
cd "$(dirname "$0")/.."
tol=${2:-1e-3}
scripts/install-deps --bench >/dev/null
scripts/build >/dev/null
run=${1:-}
if [[ -z "$run" ]]; then
  run=runs/bench_lambda_max
  if [[ ! -f "$run/model.safetensors" ]]; then
    build/bin/descent train examples/fashion_mlp.toml --set epochs=1 --out runs --name bench_lambda_max --overwrite >/dev/null
  fi
fi
export_dir=$(mktemp -d)
trap 'rm -rf "$export_dir"' EXIT
results=()
# Both sides alternate (descent, PyTorch, descent, ...) so that a machine whose load changes
# hits both alike. --rule residual is descent's own stopping rule (no reference needed); it is
# compared with PyTorch stopped by the oracle at the same accuracy (its --rule error rows).
for rule in change error residual; do
  for t in ${THREADS:-1 2}; do
    results+=("$(OMP_NUM_THREADS=$t build/bin/lambda_max "$run" "$export_dir" --threads "$t" --tol "$tol" --rule "$rule")")
    ref=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["reference_lambda_max"])' "${results[-1]}")
    if [[ $rule != residual ]]; then
      results+=("$(/usr/bin/python3 bench/lambda_max_torch.py "$run/model.safetensors" "$export_dir" --threads "$t" --tol "$tol" \
                   --rule "$rule" --reference "$ref")")
    fi
  done
done
printf '%s\n' "${results[@]}"
/usr/bin/python3 - "${results[@]}" <<'PY'
import json, sys
rows = [json.loads(s) for s in sys.argv[1:]]
print(f"lambda_max (reference: 60 Lanczos steps) {rows[0]['reference_lambda_max']:.7g}; fastest of 1 and 2 threads, "
      "min (median) of the repetitions")
for rule, torch_rule, what in [
        ("change", "change", "PyHessian's rule on both sides (stop when the estimate moves < tol)"),
        ("error", "error", "the same accuracy (both stopped by the oracle: within tol of the reference)"),
        ("residual", "error", "descent's residual bound min(r, r^2/gap) <= tol |theta| against PyTorch at the same accuracy (oracle)")]:
    d = min((r for r in rows if r["rule"] == rule and r["impl"].startswith("descent")), key=lambda r: r["seconds_min"])
    t = min((r for r in rows if r["rule"] == torch_rule and r["impl"].startswith("pytorch")), key=lambda r: r["seconds_min"])
    print(f"{what}:")
    print(f"  descent Lanczos      {d['seconds_min']:.3f} s ({d['seconds']:.3f}), {d['steps']} products, {d['threads']} threads, "
          f"relative error {d['relative_error']:.2g}")
    print(f"  PyTorch power iter.  {t['seconds_min']:.3f} s ({t['seconds']:.3f}), {t['products']} products, {t['threads']} threads, "
          f"relative error {t['relative_error']:.2g}")
    print(f"  PyTorch / descent = {t['seconds_min'] / d['seconds_min']:.2f}x wall, "
          f"{t['cpu_seconds_min'] / d['cpu_seconds_min']:.2f}x CPU time ({t['cpu_seconds_min']:.3f} s / {d['cpu_seconds_min']:.3f} s)")
PY
