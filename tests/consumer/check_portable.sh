#!/usr/bin/env bash
# The installed library must run on any x86-64 CPU: no instruction beyond the baseline
# (SSE2) outside the functions compiled for dispatch (DESCENT_DISPATCH: the clones named
# "... [clone .arch_x86_64_v3]" / "v4", chosen at run time). Looks for AVX/AVX-512 (VEX and
# EVEX: mnemonics starting with v), BMI/BMI2, LZCNT and POPCNT. Not TZCNT: for
# __builtin_ctz GCC writes the baseline "rep bsf", which objdump shows as tzcnt and which
# older CPUs run as bsf.
#   check_portable.sh libdescent.a
set -euo pipefail
lib=$1
objdump -d --no-show-raw-insn -C "$lib" | awk '
  /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
  /^ *[0-9a-f]+:\t/ {
    split($0, parts, "\t"); split(parts[2], words, " "); op = words[1]
    if (op ~ /^(v[a-z0-9]+|andn|bextr|blsi|blsmsk|blsr|bzhi|pdep|pext|rorx|sarx|shlx|shrx|mulx|lzcnt|popcnt)$/ \
        && fn !~ /arch_x86_64_v[34]/) {
      if (!(fn in seen)) { seen[fn] = 1; n++; if (n <= 10) print "not portable: " op " in " fn }
    }
  }
  END { if (n) { print n " functions use instructions beyond the baseline x86-64"; exit 1 } }'
