#!/usr/bin/env bash
# Data-parallel training against its alternatives (docs/distributed.md), in one run: the sides
# alternate within each of ROUNDS rounds (default 3), medians printed at the end. The default
# MLP 784-256-256-10 with momentum, batch 512 (global), on the first EXAMPLES (default 10000)
# Fashion-MNIST training images, two epochs per run; examples/s of training only, after a first
# pass (descent: the second epoch's record of metrics.jsonl; PyTorch: the median of 3 passes):
#   B   descent, 1 process x 2 threads
#   A   descent, mpirun -np 2, 1 thread each, OpenMPI's defaults on one machine (what a user
#       gets: pml ob1 with the shared-memory btl vader between the two ranks)
#   Ab  as A, allreduce_bucket_kb=BUCKET_KB (default 256): bucketed all-reduce overlapped
#       with the backward pass
#   At  as A over loopback TCP (the tests' --mca btl self,tcp ... pml ob1), for comparison
#   Ay  as A with --mca mpi_yield_when_idle 1 (a waiting rank yields its core)
#   T   PyTorch, 1 process, the better of 1 and 2 threads (bench/torch_ddp_mlp.py --ranks 1)
#   D   PyTorch DDP, gloo, 2 processes x 1 thread
#   Bd  as B with deterministic = true (the deterministic mode's cost; B is its "off" side)
# Prints the medians, the ratios A/B (target >= 0.9) and A/D (target >= 1.5), and the
# all-reduce's bytes and time per step (rank 0) of each 2-rank side.
#   bench/mpi.sh            (needs build/bin/descent built with MPI, mpirun; torch optional)
#   ROUNDS=5 EXAMPLES=20000 bench/mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DESCENT_BUILD_DIR:-build}/bin/descent
rounds=${ROUNDS:-3}
examples=${EXAMPLES:-10000}
bucket_kb=${BUCKET_KB:-256}
[[ -x "$bin" ]] || { echo "bench/mpi.sh: $bin not built (scripts/build)"; exit 1; }
command -v mpirun >/dev/null || { echo "bench/mpi.sh: mpirun not found (scripts/install-deps installs openmpi-bin)"; exit 1; }
mpi=(mpirun -np 2)
if [[ $(id -u) -eq 0 ]]; then mpi+=(--allow-run-as-root); fi
if (($(nproc) < 2)); then mpi+=(--oversubscribe); fi
tcp=(--mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --mca pml ob1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
have_torch=0
if /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi
# The first `examples` training images train; 2,000 validate (evaluation is not timed, but
# keeps the runs short).
common=(--set epochs=2 --set progress=plain --set tensorboard.enabled=false --set "data.limit_train=$((examples + 2000))"
        --set data.validation_size=2000 --set data.limit_test=2000 --set early_stopping.enabled=false
        --set checkpoint.every_epochs=0 --set sampler.batch_size=512 --out "$work/runs" --overwrite)
rate() {  # examples/s of run $1's second epoch (the first may carry one-time costs)
  /usr/bin/python3 -c "
import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get('kind') == 'epoch' and r.get('epoch', 0) == 2: print(r['examples_per_s'])" "$work/runs/$1/metrics.jsonl"
}
torch_rate() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["examples_per_s"])'; }
declare -A results comm
add() { results[$1]="${results[$1]:-} $2"; }
two_ranks() {  # side name, extra mpirun options..., --, extra descent options...
  local name=$1; shift
  local opts=()
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  "${mpi[@]}" "${opts[@]}" "$bin" train examples/fashion_mlp.toml "${common[@]}" --set threads=1 --name "$name" "$@" \
    >"$work/$name.log" 2>&1 || { echo "bench/mpi.sh: side $name failed:"; tail -5 "$work/$name.log"; exit 1; }
  add "$name" "$(rate "$name")"
  comm[$name]=$(grep -o 'gradient all-reduce: .*' "$work/$name.log" | sed 's/ (waiting.*//' || true)
}
one_process() {  # side name, descent options...
  local name=$1; shift
  "$bin" train examples/fashion_mlp.toml "${common[@]}" --name "$name" "$@" >"$work/$name.log" 2>&1 ||
    { echo "bench/mpi.sh: side $name failed:"; tail -5 "$work/$name.log"; exit 1; }
  add "$name" "$(rate "$name")"
}
for ((round = 1; round <= rounds; ++round)); do
  two_ranks A --
  one_process B --set threads=2
  two_ranks Ab -- --set allreduce_bucket_kb="$bucket_kb"
  two_ranks At "${tcp[@]}" --
  two_ranks Ay --mca mpi_yield_when_idle 1 --
  one_process Bd --set threads=2 --set deterministic=true
  if ((have_torch)); then
    for t in 1 2; do
      add "T$t" "$(OMP_NUM_THREADS=$t /usr/bin/python3 bench/torch_ddp_mlp.py --ranks 1 --threads $t --reps 3 \
        --examples "$examples" --batch 512 | torch_rate)"
    done
    add D "$(OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_ddp_mlp.py --ranks 2 --reps 3 --examples "$examples" \
      --batch 512 | torch_rate)"
  fi
  line="round $round:"
  for s in A B Ab At Ay Bd T1 T2 D; do [[ -n ${results[$s]:-} ]] && line+=" $s$(awk '{printf " %.0f", $NF}' <<<"${results[$s]}")"; done
  echo "$line"
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A med
for s in "${!results[@]}"; do med[$s]=$(median "${results[$s]}"); done
ratio() { awk "BEGIN {printf \"%.2f\", $1 / $2}"; }
echo "machine: $(nproc) cores, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); medians of $rounds rounds, b512, $examples examples"
printf 'descent 1 process x 2 threads                %8.0f ex/s\n' "${med[B]}"
printf 'descent 2 ranks x 1 thread (OpenMPI default) %8.0f ex/s   2 ranks / 1x2 threads: %s (target >= 0.9)\n' \
  "${med[A]}" "$(ratio "${med[A]}" "${med[B]}")"
printf '  bucketed all-reduce, %4s KiB buckets       %8.0f ex/s   / 1x2 threads: %s\n' "$bucket_kb" "${med[Ab]}" \
  "$(ratio "${med[Ab]}" "${med[B]}")"
printf '  loopback TCP (the tests'"'"' transport)       %8.0f ex/s   / 1x2 threads: %s\n' "${med[At]}" \
  "$(ratio "${med[At]}" "${med[B]}")"
printf '  mpi_yield_when_idle 1                      %8.0f ex/s   / 1x2 threads: %s\n' "${med[Ay]}" \
  "$(ratio "${med[Ay]}" "${med[B]}")"
if ((have_torch)); then
  best=T1
  if awk "BEGIN {exit !(${med[T2]} > ${med[T1]})}"; then best=T2; fi
  printf 'PyTorch 1 process, best of 1/2 threads (%s)  %8.0f ex/s   (1 thread %.0f, 2 threads %.0f)\n' "${best#T}" \
    "${med[$best]}" "${med[T1]}" "${med[T2]}"
  printf 'PyTorch DDP gloo 2 ranks x 1 thread          %8.0f ex/s   descent 2 ranks / DDP: %s (target >= 1.5)\n' \
    "${med[D]}" "$(ratio "${med[A]}" "${med[D]}")"
else
  echo "PyTorch: SKIPPED (/usr/bin/python3 cannot import torch: scripts/install-deps --bench)"
fi
printf 'deterministic, 1 process x 2 threads: off %.0f, on %.0f ex/s: cost %+.1f%%\n' "${med[B]}" "${med[Bd]}" \
  "$(awk "BEGIN {print 100 * (1 - ${med[Bd]} / ${med[B]})}")"
echo "communication per step (rank 0, last round; waiting for the other rank included):"
for s in A Ab At Ay; do echo "  $s: ${comm[$s]}"; done
