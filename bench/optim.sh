#!/usr/bin/env bash
# One optimizer step on 10M float32 parameters: descent's fused loops against a triad
# measured in the same run, and against PyTorch's optimizer.step() (foreach and not),
# same sizes and threads. Prints both JSON lines and a table of ratios.
#   bench/optim.sh [threads]     (default: 2; DESCENT_BUILD_DIR picks the build folder)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
dir=${DESCENT_BUILD_DIR:-build}
if [[ -z "${DESCENT_NO_BUILD:-}" ]]; then
  scripts/install-deps --bench
  scripts/build >/dev/null
fi
uptime
d=$(OMP_NUM_THREADS=$threads "$dir/bin/optim_step" --threads "$threads")
t=$(/usr/bin/python3 bench/optim_step_torch.py --threads "$threads")
echo "$d"
echo "$t"
/usr/bin/python3 - "$d" "$t" <<'PY'
import json, sys
d, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"triad: {d['triad_gbs']:.1f} GB/s (3 arrays counted, as STREAM does)")
print(f"{'step':18s} {'descent ms':>10s} {'GB/s':>6s} {'of triad':>8s} {'torch ms':>9s} {'foreach':>8s} {'torch/descent':>13s}")
for name, s in d["steps"].items():
    tp = t["steps"].get(name, {}).get("ms")
    tf = t["steps"].get(name + "_foreach", {}).get("ms")
    best = min(x for x in (tp, tf) if x is not None) if (tp or tf) else None
    ratio = f"{best / s['ms']:.2f}" if best else "-"
    print(f"{name:18s} {s['ms']:10.2f} {s['gbs']:6.1f} {100 * s['of_triad']:7.0f}% "
          f"{tp if tp else '-':>9} {tf if tf else '-':>8} {ratio:>13s}")
PY
