#!/usr/bin/env bash
# Data-parallel training against its alternatives (docs/distributed.md), sides alternating in
# one run, ROUNDS rounds (default 3), the default MLP 784-256-256-10 with momentum on the
# first EXAMPLES (default 10000) Fashion-MNIST training images, one epoch per run; examples/s
# from metrics.jsonl's epoch record (training only, evaluation excluded):
#   A  mpirun -np 2, 1 thread each, batch 512 (global)
#   B  one process, 2 threads, batch 512
#   D  PyTorch DDP (gloo, 2 processes x 1 thread, bench/torch_ddp_mlp.py), batch 512
#   deterministic off / on, one process, 2 threads, batch 128 and 512
# Prints the medians, the ratios A/B (target >= 0.9) and A/D (target >= 1.5), the
# deterministic mode's cost, and the all-reduce's bytes and time per step (rank 0).
#   bench/mpi.sh            (needs build/bin/descent built with MPI, mpirun; torch optional)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DESCENT_BUILD_DIR:-build}/bin/descent
rounds=${ROUNDS:-3}
examples=${EXAMPLES:-10000}
[[ -x "$bin" ]] || { echo "bench/mpi.sh: $bin not built (scripts/build)"; exit 1; }
command -v mpirun >/dev/null || { echo "bench/mpi.sh: mpirun not found (scripts/install-deps installs openmpi-bin)"; exit 1; }
mpi=(mpirun --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --mca pml ob1)
if [[ $(id -u) -eq 0 ]]; then mpi+=(--allow-run-as-root); fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
have_torch=0
if /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi
# 60000 - validation_size training examples.
common=(--set epochs=1 --set progress=plain --set tensorboard.enabled=false --set "data.validation_size=$((60000 - examples))"
        --set early_stopping.enabled=false --set checkpoint.every_epochs=0 --out "$work/runs" --overwrite)
rate() {  # examples/s of the epoch record of run $1
  /usr/bin/python3 -c "
import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get('kind') == 'epoch' and r.get('epoch', 0) >= 1: print(r['examples_per_s'])" "$work/runs/$1/metrics.jsonl"
}
declare -A results
add() { results[$1]="${results[$1]:-} $2"; }
for ((round = 1; round <= rounds; ++round)); do
  "${mpi[@]}" -np 2 "$bin" train examples/fashion_mlp.toml "${common[@]}" --set threads=1 --set sampler.batch_size=512 \
    --name A >"$work/A.log" 2>&1
  add A "$(rate A)"
  comm=$(grep -o 'gradient all-reduce: .*' "$work/A.log" || true)
  "$bin" train examples/fashion_mlp.toml "${common[@]}" --set threads=2 --set sampler.batch_size=512 --name B >/dev/null 2>&1
  add B "$(rate B)"
  if ((have_torch)); then
    add D "$(OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_ddp_mlp.py --reps 1 --examples "$examples" --batch 512 |
      /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["examples_per_s"])')"
  fi
  for b in 128 512; do
    for det in false true; do
      "$bin" train examples/fashion_mlp.toml "${common[@]}" --set threads=2 --set sampler.batch_size=$b \
        --set deterministic=$det --name "det-$det-$b" >/dev/null 2>&1
      add "det-$det-$b" "$(rate "det-$det-$b")"
    done
  done
  echo "round $round: A${results[A]} | B${results[B]} | D${results[D]:-} (comm: $comm)"
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
A=$(median "${results[A]}"); B=$(median "${results[B]}")
printf 'load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '2 ranks x 1 thread, b512:           %8.0f ex/s\n' "$A"
printf '1 process x 2 threads, b512:        %8.0f ex/s   ratio %.2f (target >= 0.9)\n' "$B" "$(awk "BEGIN {print $A / $B}")"
if ((have_torch)); then
  D=$(median "${results[D]}")
  printf 'PyTorch DDP gloo 2 x 1 thread, b512: %8.0f ex/s   descent / DDP %.2f (target >= 1.5)\n' "$D" "$(awk "BEGIN {print $A / $D}")"
else
  echo "PyTorch DDP: SKIPPED (/usr/bin/python3 cannot import torch: scripts/install-deps --bench)"
fi
for b in 128 512; do
  off=$(median "${results[det-false-$b]}"); on=$(median "${results[det-true-$b]}")
  printf 'deterministic, 2 threads, b%s: off %8.0f, on %8.0f ex/s: cost %+.1f%%\n' "$b" "$off" "$on" \
    "$(awk "BEGIN {print 100 * (1 - $on / $off)}")"
done
echo "communication (last 2-rank run, rank 0): $comm"
