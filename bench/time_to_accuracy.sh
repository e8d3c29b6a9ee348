#!/usr/bin/env bash
# Time to 88.5% test accuracy on the default example, descent against PyTorch, in one run
# (docs/performance.md): the same model, initialization, preprocessing, optimizer, schedule,
# batch and thread count. Each side is spawned 3 times, alternating (d t t d d t); a side's
# time is from spawning its process to the end of the first epoch whose test accuracy
# reaches the target (test evaluation off the clock), the best of its processes kept.
#   bench/time_to_accuracy.sh [--threads N] [--target 0.885]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2
target=0.885
while (( $# > 0 )); do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --target) target=${2:?}; shift 2 ;;
    *) echo "usage: bench/time_to_accuracy.sh [--threads N] [--target A]" >&2; exit 2 ;;
  esac
done
scripts/install-deps --bench
scripts/build >/dev/null
exec /usr/bin/python3 - "$threads" "$target" "${DESCENT_BUILD_DIR:-build}/bin" <<'PY'
import json, os, subprocess, sys, time

threads, target, bin_dir = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(os.environ, OMP_NUM_THREADS=threads)
runs = {"descent": [], "pytorch": []}
cmds = {"descent": [f"{bin_dir}/time_to_accuracy", "--threads", threads, "--target", target],
        "pytorch": ["/usr/bin/python3", "bench/torch_time_to_accuracy.py", "--threads", threads, "--target", target]}
for who in ["descent", "pytorch", "pytorch", "descent", "descent", "pytorch"]:
    spawn = time.time()
    p = subprocess.run(cmds[who], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"time_to_accuracy: {' '.join(cmds[who])} failed:\n{p.stderr}")
    d = json.loads(p.stdout.strip().splitlines()[-1])
    if "ready_unix" in d:
        d["spawn_to_ready_s"] = round(d["ready_unix"] - spawn, 3)
        d["seconds_to_target"] = round(d["spawn_to_ready_s"] + d["train_s_to_target"], 3)
    runs[who].append(d)
    print(f"  {who:8s} {d.get('seconds_to_target', 'not reached')} s (epoch {d.get('epoch')}, "
          f"accuracy {d.get('accuracy')})", file=sys.stderr)
best = {w: min((r for r in rs if "seconds_to_target" in r), key=lambda r: r["seconds_to_target"], default=None)
        for w, rs in runs.items()}
d, t = best["descent"], best["pytorch"]
ratio = d["seconds_to_target"] / t["seconds_to_target"] if d and t else None
print(f"time to {float(target):.1%} test accuracy, default example, {threads} threads:")
for w, r in best.items():
    if r:
        print(f"  {w:8s} {r['seconds_to_target']:7.2f} s  (start {r['spawn_to_ready_s']:.2f} s + training "
              f"{r['train_s_to_target']:.2f} s, epoch {r['epoch']}, test accuracy {r['accuracy']:.4f})")
print(f"  descent / pytorch: {ratio:.2f}" if ratio else "  ratio: n/a")
os.makedirs("bench/results", exist_ok=True)
with open("bench/results/time_to_accuracy.json", "w") as f:
    json.dump({"threads": int(threads), "target": float(target), "runs": runs, "ratio": ratio}, f, indent=1)
PY
