#!/usr/bin/env bash
# docs/library.md and README.md quote the examples in this folder: every line of every
# ```cpp block of theirs must be a line (leading spaces aside) of one of the examples, so
# that a quote cannot drift from the code that ctest compiles and runs.
#   examples/library/check_quotes.sh [source dir]
set -uo pipefail
cd "${1:-$(dirname "$0")/../..}"
known=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' examples/library/*.cpp)
bad=0
for doc in docs/library.md README.md; do
  blocks=0
  in_block=0
  while IFS= read -r line; do
    if [[ $line == '```cpp'* ]]; then in_block=1; blocks=$((blocks + 1)); continue; fi
    if [[ $line == '```'* ]]; then in_block=0; continue; fi
    (( in_block )) || continue
    stripped=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$line")
    [[ -z $stripped ]] && continue
    if ! grep -qxF -- "$stripped" <<<"$known"; then
      echo "$doc: quoted line found in no examples/library/*.cpp: $stripped" >&2
      bad=1
    fi
  done <"$doc"
  if (( blocks == 0 )); then echo "$doc: no \`\`\`cpp block" >&2; bad=1; fi
done
exit $bad
