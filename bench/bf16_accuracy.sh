#!/usr/bin/env bash
# The accuracy target of mixed precision (issue 20): the default example's test accuracy
# with model.dtype = "bf16" against "f32", the mean over seeds (default 1 2 3), each seed
# trained in full (30 epochs of examples/fashion_mlp.toml, about 2-4 min per run at 2
# threads). Prints one line per run, then the means and their difference; exits 1 when bf16's
# mean is more than 0.3 points below f32's.
#   bench/bf16_accuracy.sh [--seeds "1 2 3"] [--threads 2] [--out DIR] [--set KEY=VALUE]...
# --set is passed to every run (e.g. --set epochs=2 --set data.limit_train=13000 for a smoke
# run: the example holds out 10,000 validation examples). The run folders go to a temporary
# folder, removed at the end, or with --out to DIR, kept (DIR/<dtype>_seed<N>/metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="1 2 3"
threads=2
keep=
extra=()
while (( $# > 0 )); do
  case "$1" in
    --seeds) seeds=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --out) keep=${2:?}; shift 2 ;;
    --set) extra+=(--set "${2:?}"); shift 2 ;;
    *) echo "usage: bench/bf16_accuracy.sh [--seeds \"1 2 3\"] [--threads N] [--out DIR] [--set KEY=VALUE]..." >&2; exit 2 ;;
  esac
done
bin=${DESCENT_BUILD_DIR:-build}/bin/descent
[[ -x "$bin" ]] || { echo "bf16_accuracy: $bin not built (scripts/build)" >&2; exit 2; }
if [[ -n "$keep" ]]; then
  mkdir -p "$keep"
  out=$keep
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
for seed in $seeds; do
  for dtype in f32 bf16; do
    name="${dtype}_seed${seed}"
    OMP_NUM_THREADS=$threads "$bin" train examples/fashion_mlp.toml --set "model.dtype=\"$dtype\"" --set "seed=$seed" \
      --set "threads=$threads" --set progress=none "${extra[@]}" --out "$out" --name "$name" >/dev/null
    /usr/bin/python3 - "$out/$name/metrics.jsonl" "$dtype" "$seed" <<'PY'
import json, sys
final = [json.loads(l) for l in open(sys.argv[1]) if '"final"' in l][-1]
print(f"{sys.argv[2]:5s} seed {sys.argv[3]}: test accuracy {100 * final['test_accuracy']:.2f}%  ({final['wall_s']:.0f} s)")
PY
  done
done | tee "$out/lines.txt"
/usr/bin/python3 - "$out/lines.txt" <<'PY'
import re, sys
acc = {"f32": [], "bf16": []}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+)\s+seed \d+: test accuracy ([\d.]+)%", line)
    if m:
        acc[m.group(1)].append(float(m.group(2)))
mean = {k: sum(v) / len(v) for k, v in acc.items()}
# sample standard deviation over the seeds (n - 1); 0 for one seed
sd = {k: (sum((a - mean[k]) ** 2 for a in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0 for k, v in acc.items()}
diff = mean["bf16"] - mean["f32"]
print(f"mean test accuracy over {len(acc['f32'])} seeds: f32 {mean['f32']:.2f}% (sd {sd['f32']:.2f}), "
      f"bf16 {mean['bf16']:.2f}% (sd {sd['bf16']:.2f}), bf16 - f32 = {diff:+.2f} points (target: >= -0.30)")
sys.exit(0 if diff >= -0.3 else 1)
PY
