#!/usr/bin/env bash
# make bench: runs every tests/bench/*.sh benchmark in turn. Each prints its
# figures and ratios against the reference it runs in the same invocation and
# writes them to results/bench/<name>.txt.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export AUTOINTERP_BIN=${AUTOINTERP_BIN:-$PWD/bin/autointerp}
mkdir -p results/bench
status=0
only=${BENCH:-}
for b in tests/bench/*.sh; do
  [ -f "$b" ] || continue
  name=$(basename "$b" .sh)
  if [ -n "$only" ] && [[ ! " $only " == *" $name "* ]]; then continue; fi
  echo "== bench $name"
  bash "$b" | tee "results/bench/$name.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done
exit $status
