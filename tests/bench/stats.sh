#!/usr/bin/env bash
# Benchmark of src/stats against scipy/numpy doing the same work in the same
# invocation (run by `make bench`, or directly after building
# $BUILD/bench/bench_stats).
#   1. bootstrap: 6 dictionaries x 200 scores, B = 100,000 resamples, percentile
#      + BCa per dictionary, 3 pairs with CI of the difference and pooled-null
#      p-value. C (all CPUs, and one thread) vs scipy.stats.bootstrap + numpy.
#   2. geometry: nearest-other-direction cosine of a random 46,080 x 768
#      dictionary (time, peak RSS); numpy brute force needs the full
#      46,080^2 similarity matrix (8 GiB), so numpy and C are compared on
#      12,288 x 768 (a 576 MiB matrix for numpy).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bench/bench_stats
B=${STATS_BENCH_RESAMPLES:-100000}
GEOM_N=${STATS_BENCH_GEOM_N:-46080}
GEOM_SMALL=${STATS_BENCH_GEOM_SMALL:-12288}
if [ ! -x "$bin" ]; then echo "stats bench: $bin is missing (make BUILD=$BUILD $bin)"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# run CMD... > FILE, then show FILE; fails when CMD fails
run_to() { local out=$1; shift; "$@" > "$out"; local rc=$?; cat "$out"; return $rc; }
field() { sed -n "s/^$1 \([0-9.]*\).*/\1/p" "$2" | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }

echo "== bootstrap (B = $B)"
run_to "$tmp/c.txt" "$bin" boot "$tmp" "$B" || exit 1
if /usr/bin/python3 -c 'import numpy, scipy' 2>/dev/null; then
    run_to "$tmp/py.txt" /usr/bin/python3 tests/bench/stats_ref.py boot "$tmp" "$B" || exit 1
    c=$(field c_seconds "$tmp/c.txt"); c1=$(field c_seconds_1thread "$tmp/c.txt"); py=$(field scipy_seconds "$tmp/py.txt")
    cc=$(field c_cpu_seconds "$tmp/c.txt"); pyc=$(field scipy_cpu_seconds "$tmp/py.txt")
    echo "bootstrap wall time: C $c s ($(nproc) CPUs), C $c1 s (1 thread), scipy $py s: scipy/C = $(ratio "$py" "$c")x ($(ratio "$py" "$c1")x single-threaded)"
    echo "bootstrap CPU time: C $cc s, scipy $pyc s: scipy/C = $(ratio "$pyc" "$cc")x (load average $(cut -d' ' -f1 /proc/loadavg) during the run)"
else
    echo "skip scipy side: /usr/bin/python3 lacks numpy or scipy"
fi

echo "== geometry, full size"
run_to "$tmp/g.txt" "$bin" geom "$GEOM_N" 768 || exit 1
echo "(load average $(cut -d' ' -f1 /proc/loadavg) after the run)"
echo "== geometry, $GEOM_SMALL x 768, C and numpy"
run_to "$tmp/gs.txt" "$bin" geom "$GEOM_SMALL" 768 "$tmp" || exit 1
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    run_to "$tmp/gp.txt" /usr/bin/python3 tests/bench/stats_ref.py geom "$tmp" "$GEOM_SMALL" 768 || exit 1
    c=$(field c_geom_seconds "$tmp/gs.txt"); py=$(field numpy_geom_seconds "$tmp/gp.txt")
    echo "geometry $GEOM_SMALL x 768: C $c s, numpy $py s: numpy/C = $(ratio "$py" "$c")x (load average $(cut -d' ' -f1 /proc/loadavg); both are sgemm-bound, the point of the C version is memory)"
fi
