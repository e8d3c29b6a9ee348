#!/usr/bin/env bash
# The cost of the monitors during training (issue 14: the curvature monitor every 10 updates
# must cost at most 25% of training time) on the default MLP (examples/fashion_mlp.toml:
# 784-256-256-10, momentum, batch 128), trained by `descent train` with and without
# [diagnostics], the runs interleaved so that a machine whose load changes hits both alike.
#   bench/monitors.sh [threads] [examples] [repetitions]     (defaults: 2, 20000, 3)
# Prints one JSON line per run and a summary per configuration (medians over the
# repetitions): the training throughput (the epoch record's examples_per_s, evaluation
# excluded) and its overhead off/on - 1, and the cost: the monitors' own seconds (the final
# record's monitor_seconds) over the rest of the same run's training time (from the first to
# the last step record), the steadier figure on a loaded machine.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
examples=${2:-20000}
reps=${3:-3}
build=${DESCENT_BUILD_DIR:-build}
[ -x "$build/bin/descent" ] || scripts/build >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

declare -A SETS=(
  [off]=""
  [curvature10]="--set diagnostics.curvature_every=10"
  [curvature10_update]="--set diagnostics.curvature_every=10 --set diagnostics.curvature_update=true"
  [all]="--set diagnostics.curvature_every=10 --set diagnostics.layers_every=10 --set diagnostics.cliff_factor=5"
)
order=(off curvature10 curvature10_update all)
for r in $(seq 1 "$reps"); do
  for name in "${order[@]}"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$threads "$build/bin/descent" train examples/fashion_mlp.toml --out "$out" --name "$name-$r" \
      --set epochs=1 --set threads="$threads" --set progress=none --set data.limit_train="$examples" \
      --set data.validation_size=2000 --set checkpoint.every_epochs=0 ${SETS[$name]} >/dev/null
    /usr/bin/python3 - "$out/$name-$r/metrics.jsonl" "$name" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
epoch = next(r for r in recs if r["kind"] == "epoch" and r["epoch"] >= 1)  # epoch 0: the initial evaluation
final = next(r for r in recs if r["kind"] == "final")
steps = [r for r in recs if r["kind"] == "step"]
train_s = steps[-1]["wall_s"] - steps[0]["wall_s"]
print(json.dumps({"config": sys.argv[2], "examples_per_s": epoch["examples_per_s"], "steps": len(steps),
                  "train_s": train_s, "monitor_seconds": final.get("monitor_seconds", {}).get("total", 0.0)}))
PY
  done
done | tee "$out/all.jsonl"
/usr/bin/python3 - "$out/all.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["config"], []).append(r)
base = statistics.median(r["examples_per_s"] for r in by["off"])
print("throughput: the epoch's examples/s (runs apart: sensitive to the machine's load); cost: the monitors' own")
print("seconds over the rest of the same run's training time (one run: load hits both alike)")
for name, rs in by.items():
    eps = statistics.median(r["examples_per_s"] for r in rs)
    cost = statistics.median(r["monitor_seconds"] / (r["train_s"] - r["monitor_seconds"]) for r in rs)
    print(f"{name:20s} {eps:9.0f} ex/s   throughput overhead {base / eps - 1:6.1%}   cost {cost:6.1%}")
PY
