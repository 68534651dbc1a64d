#!/usr/bin/env bash
# Extraction throughput (tokens/s): forward to the hook + encode + per-feature
# statistics and windows, in C (tests/bench/bench_extract.c; "c" lines encode
# every feature, "c-sae" lines only the 200 sampled ones, the alive set being
# known from the SAE's metrics as with extract.alive_from "sae")
# and in PyTorch at its best settings (tests/bench/extract_ref.py: 2 threads,
# OMP_WAIT_POLICY=PASSIVE, no mmap'd or trimmed malloc arenas, best of several
# batch sizes), in the same invocation on the same machine.
#   gpt2s: GPT-2 small dimensions, random weights, 60x SAE (46,080 features) at layer 6
#   small: 4 layers, d 128, 50x SAE (6,400 features) at layer 2
# Usage: bash tests/bench/extract.sh   (BUILD=build-x to pick the build tree;
# EXTRACT_BENCH_TOKENS_GPT2S / EXTRACT_BENCH_TOKENS_SMALL to change the sizes)
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bench/bench_extract
if [ ! -x "$bin" ]; then
    echo "skip - extract: $bin is not built (make bench builds it)"
    exit 0
fi
n_gpt2s=${EXTRACT_BENCH_TOKENS_GPT2S:-8192}
n_small=${EXTRACT_BENCH_TOKENS_SMALL:-65536}
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1

# Each runner prints its per-batch lines, then "best RATE" as its last line.
best_c() { # kind tokens mode batch...
    local kind=$1 n=$2 mode=$3 best=0 line rate
    shift 3
    for b in "$@"; do
        line=$(OPENBLAS_NUM_THREADS=2 "$bin" "$kind" "$n" "$b" "$mode" 2>/dev/null) || { echo "FAILED: $bin $kind $n $b $mode"; continue; }
        echo "$line"
        rate=$(echo "$line" | awk '{for (i = 1; i < NF; i++) if ($(i+1) == "tok/s") print $i}')
        best=$(awk -v a="$best" -v b="$rate" 'BEGIN{print (b > a) ? b : a}')
    done
    echo "best $best"
}

best_torch() { # kind tokens batch...
    OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
        OMP_NUM_THREADS=2 /usr/bin/python3 tests/bench/extract_ref.py "$@" |
        awk '$3 == "best" {print "best " $4; next} {print}'
}

echo "# extraction throughput, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# C and PyTorch alternate batch size by batch size, so both see the same machine load"
for kind in small gpt2s; do
    if [ "$kind" = small ]; then n=$n_small; batches="8 16 32"; else n=$n_gpt2s; batches="1 2 4"; fi
    c=0 cs=0 t=0
    for b in $batches; do
        out=$(best_c "$kind" "$n" pass "$b")
        echo "$out" | grep -v '^best '
        c=$(echo "$out" | awk -v m="$c" '$1 == "best" {print ($2 > m) ? $2 : m}')
        out=$(best_c "$kind" "$n" sae "$b")
        echo "$out" | grep -v '^best '
        cs=$(echo "$out" | awk -v m="$cs" '$1 == "best" {print ($2 > m) ? $2 : m}')
        if [ "$have_torch" = 1 ]; then
            out=$(best_torch "$kind" "$n" "$b")
            echo "$out" | grep -v '^best '
            t=$(echo "$out" | awk -v m="$t" '$1 == "best" {print ($2 > m) ? $2 : m}')
        fi
    done
    if [ "$have_torch" = 1 ]; then
        ratio=$(awk -v c="$c" -v t="${t:-0}" 'BEGIN{if (t > 0) printf "%.2f", c / t; else print "n/a"}')
        ratio_s=$(awk -v c="$cs" -v t="${t:-0}" 'BEGIN{if (t > 0) printf "%.2f", c / t; else print "n/a"}')
        met=$(awk -v r="$ratio_s" 'BEGIN{print (r + 0 >= 2) ? "met" : "NOT met"}')
        echo "result  $kind  alive from the SAE's metrics (extract.alive_from sae): C best $cs tok/s  PyTorch best ${t:-?} tok/s  ratio ${ratio_s}x (target >= 2x: $met)"
        echo "result  $kind  every feature encoded (alive_from pass, the same work as PyTorch): C best $c tok/s  ratio ${ratio}x"
    else
        echo "result  $kind  C best $c tok/s (pass), $cs tok/s (alive from SAE metrics)  (PyTorch reference skipped: /usr/bin/python3 has no torch)"
    fi
done
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
