#!/usr/bin/env bash
# lambda_max of the default MLP (examples/fashion_mlp.toml trained for one epoch) on its
# first 1000 training examples: descent's Lanczos against PyHessian's power iteration
# (double backward in PyTorch), same weights, same examples, same stopping tolerance; each
# side at 1 and 2 threads, the best of each compared.
#   bench/lambda_max.sh [RUN_DIR] [tol]     (default: trains runs/bench_lambda_max; tol 1e-3)
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
d1=$(OMP_NUM_THREADS=1 build/bin/lambda_max "$run" "$export_dir" --threads 1 --tol "$tol")
d2=$(OMP_NUM_THREADS=2 build/bin/lambda_max "$run" "$export_dir" --threads 2 --tol "$tol")
ref=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["reference_lambda_max"])' "$d2")
t1=$(/usr/bin/python3 bench/lambda_max_torch.py "$run/model.safetensors" "$export_dir" --threads 1 --tol "$tol" --reference "$ref")
t2=$(/usr/bin/python3 bench/lambda_max_torch.py "$run/model.safetensors" "$export_dir" --threads 2 --tol "$tol" --reference "$ref")
printf '%s\n%s\n%s\n%s\n' "$d1" "$d2" "$t1" "$t2"
/usr/bin/python3 - "$d1" "$d2" "$t1" "$t2" <<'PY'
import json, sys
d = min((json.loads(s) for s in sys.argv[1:3]), key=lambda r: r["seconds"])
t = min((json.loads(s) for s in sys.argv[3:5]), key=lambda r: r["seconds"])
print(f"lambda_max (reference, 60 Lanczos steps): {d['reference_lambda_max']:.6g}")
print(f"descent Lanczos:       {d['seconds']:.3f} s, {d['steps']} products, {d['threads']} threads, "
      f"relative error {d['relative_error']:.2g}")
print(f"PyTorch power iter.:   {t['seconds']:.3f} s, {t['products']} products, {t['threads']} threads, "
      f"relative error {t['relative_error']:.2g}")
print(f"PyTorch / descent = {t['seconds'] / d['seconds']:.2f}x")
PY
