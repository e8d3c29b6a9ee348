#!/usr/bin/env bash
# The CNN benchmark (train_cnn) with the convolution/pooling kernels of issue 20's CNN work
# against the loops they replaced (DESCENT_CONV_KERNELS=reference: also ReLU and max-pool as
# separate nodes, not the fused conv -> ReLU -> max-pool of session 9), alternated in one run:
# round by round, reference then new, each its own process. Prints each round's examples/s
# and the median of the per-round ratios new / reference (ratios survive a loaded machine
# better than absolute figures).
#   bench/cnn_ab.sh [rounds 5] [threads 2] [examples 5000] [reps 3]
# Uses build/bin/train_cnn (DESCENT_BUILD_DIR overrides build/). CNN_AB_OLD=unfused makes the
# reference side only the fusion's absence (DESCENT_CONV_KERNELS=unfused: ReLU and max-pool
# as separate nodes, everything else as new); CNN_AB_OLD=direct makes it only Winograd's absence
# (DESCENT_CONV_KERNELS=direct: oneDNN's direct convolution for conv2's three passes).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} threads=${2:-2} examples=${3:-5000} reps=${4:-3}
old_kernels=${CNN_AB_OLD:-reference}
bin=${DESCENT_BUILD_DIR:-build}/bin/train_cnn
[[ -x "$bin" ]] || { echo "cnn_ab: $bin not built (scripts/build)" >&2; exit 1; }
# prints "wall_rate cpu_rate" (examples per second of wall time and of CPU time)
rate() { OMP_NUM_THREADS=$threads "$@" "$bin" --threads "$threads" --examples "$examples" --reps "$reps" |
  sed -n 's/.*"examples_per_s": \([0-9.]*\).*"examples_per_cpu_s": \([0-9.]*\).*/\1 \2/p'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
wall=() cpu=()
for ((r = 1; r <= rounds; ++r)); do
  read -r old old_cpu < <(rate env DESCENT_CONV_KERNELS="$old_kernels")
  read -r new new_cpu < <(rate env)
  wall+=("$(awk -v a="$new" -v b="$old" 'BEGIN { printf "%.3f", a / b }')")
  cpu+=("$(awk -v a="$new_cpu" -v b="$old_cpu" 'BEGIN { printf "%.3f", a / b }')")
  echo "round $r: reference $old ex/s ($old_cpu per CPU s), new $new ex/s ($new_cpu per CPU s), new/reference ${wall[-1]} (CPU ${cpu[-1]})"
done
echo "median new/reference over $rounds rounds: wall $(printf '%s\n' "${wall[@]}" | median), CPU time $(printf '%s\n' "${cpu[@]}" | median)"
