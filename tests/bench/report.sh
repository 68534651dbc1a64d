#!/usr/bin/env bash
# Benchmark of the whole report stage against scipy computing the same
# intervals, in the same invocation (run by `make bench`, or directly after
# building $BUILD/bench/bench_report):
#   6 SAEs x 200 features, B = 100,000: per-SAE percentile + BCa CI of the mean,
#   6 matched pairs with the CI of the difference and a pooled-null p-value.
#   The C side is the whole stage (reading, statistics, geometry of six 64 x 512
#   dictionaries, tables, plots, summary); scipy does only the intervals.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bench/bench_report
B=${REPORT_BENCH_RESAMPLES:-100000}
if [ ! -x "$bin" ]; then echo "report bench: $bin is missing (make BUILD=$BUILD $bin)"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { sed -n "s/^$1 \([0-9.]*\).*/\1/p" "$2" | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }

echo "== report stage, 6 SAEs x 200 features, B = $B"
"$bin" "$tmp" "$B" > "$tmp/c.txt" || { cat "$tmp/c.txt"; exit 1; }
cat "$tmp/c.txt"
"$bin" "$tmp/one" "$B" 1 > "$tmp/c1.txt" || exit 1
echo "single thread: c_seconds $(field c_seconds "$tmp/c1.txt")"
if /usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null; then
    /usr/bin/python3 tests/bench/report_ref.py "$tmp/bench" "$B" > "$tmp/py.txt" || { cat "$tmp/py.txt"; exit 1; }
    cat "$tmp/py.txt"
    c=$(field c_seconds "$tmp/c.txt"); c1=$(field c_seconds "$tmp/c1.txt"); py=$(field scipy_seconds "$tmp/py.txt")
    cc=$(field c_cpu_seconds "$tmp/c.txt"); pyc=$(field scipy_cpu_seconds "$tmp/py.txt")
    echo "report wall time: C $c s ($(nproc) CPUs), C $c1 s (1 thread), scipy $py s: scipy/C = $(ratio "$py" "$c")x ($(ratio "$py" "$c1")x single-threaded)"
    echo "report CPU time: C $cc s, scipy $pyc s: scipy/C = $(ratio "$pyc" "$cc")x (load average $(cut -d' ' -f1 /proc/loadavg))"
else
    echo "skip scipy side: /usr/bin/python3 lacks numpy or scipy"
fi
