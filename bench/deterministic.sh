#!/usr/bin/env bash
# Deterministic mode's cost (`deterministic = true`, docs/distributed.md): the default MLP
# 784-256-256-10 with momentum trained by `descent train examples/fashion_mlp.toml` for two
# epochs on the first EXAMPLES (default 20000) Fashion-MNIST training images, at batch 128
# and 512, deterministic off and on, the four sides alternating within each of ROUNDS rounds
# (default 5) so that a slow spell of the machine hits all of them. Examples/s of training
# only (the second epoch's record of metrics.jsonl: the first carries a one-time warm-up;
# evaluation excluded); prints each round, then the
# medians and the cost (1 - on / off) per batch.
#   bench/deterministic.sh [threads]            (default: 2)
#   ROUNDS=7 EXAMPLES=30000 bench/deterministic.sh 2
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
bin=${DESCENT_BUILD_DIR:-build}/bin/descent
rounds=${ROUNDS:-5}
examples=${EXAMPLES:-20000}
[[ -x "$bin" ]] || { echo "bench/deterministic.sh: $bin not built (scripts/build)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 2,000 validation and 2,000 test examples: evaluation is not timed, but keeps the runs short.
common=(--set epochs=2 --set progress=none --set tensorboard.enabled=false --set "data.limit_train=$((examples + 2000))"
        --set data.validation_size=2000 --set data.limit_test=2000 --set early_stopping.enabled=false
        --set checkpoint.every_epochs=0 --set "threads=$threads" --out "$work/runs" --overwrite)
rate() {  # examples/s of run $1's second epoch (the first may carry one-time costs)
  /usr/bin/python3 -c "
import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get('kind') == 'epoch' and r.get('epoch', 0) == 2: print(r['examples_per_s'])" "$work/runs/$1/metrics.jsonl"
}
declare -A results
sides=(b128_off b128_on b512_off b512_on)
for ((round = 1; round <= rounds; ++round)); do
  line="round $round:"
  for side in "${sides[@]}"; do
    batch=${side%_*}; batch=${batch#b}
    det=false; [[ $side == *_on ]] && det=true
    "$bin" train examples/fashion_mlp.toml "${common[@]}" --set "sampler.batch_size=$batch" --set "deterministic=$det" \
      --name "$side" >"$work/$side.log" 2>&1 || { echo "bench/deterministic.sh: side $side failed:"; tail -5 "$work/$side.log"; exit 1; }
    r=$(rate "$side")
    results[$side]="${results[$side]:-} $r"
    line+=" $side $(printf '%.0f' "$r")"
  done
  echo "$line"
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "machine: $(nproc) cores, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); medians of $rounds rounds, $threads threads, $examples examples"
for b in 128 512; do
  off=$(median "${results[b${b}_off]}"); on=$(median "${results[b${b}_on]}")
  printf 'MLP momentum b%-4s deterministic off %8.0f ex/s, on %8.0f ex/s: cost %+.1f%%\n' "$b" "$off" "$on" \
    "$(awk "BEGIN {print 100 * (1 - $on / $off)}")"
done
