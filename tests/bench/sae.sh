#!/usr/bin/env bash
# SAE training throughput (tokens/s) in C (tests/bench/bench_sae.c) against PyTorch
# at its best settings (tests/bench/sae_ref.py: 2 threads, OMP_WAIT_POLICY=PASSIVE,
# no mmap'd or trimmed malloc arenas) doing the same step, in the same invocation.
#   gpt2s: GPT-2 small dimensions (random weights, T 1024), 60x SAE (46,080
#          features) at layer 6, sparsity of a trained SAE (~50 features per token)
#   small: 4 layers, d 128, T 128, 50x SAE (6,400 features) at layer 2
# Step types: sae (the local SAE step on given activations), local (+ model forward
# to the hook), local4 (4 local SAEs sharing each forward pass, as `train` does for a
# sweep; tok/s counts SAE-tokens), e2e (KL through the frozen later blocks), e2e_ds
# (+ downstream MSE).
# Each line: tokens/s, ms/step, L0 and peak RSS; then C/PyTorch ratios, the targets
# (local >= 3x, e2e and e2e_ds >= 1.5x) and the e2e/local time ratio.
# Usage: bash tests/bench/sae.sh   (BUILD=build-x picks the build tree; SAE_BENCH_KINDS
# ="small" for a quick run; SAE_BENCH_STEPS to change the timed steps)
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bench/bench_sae
if [ ! -x "$bin" ]; then
    echo "skip - sae: $bin is not built (make bench builds it)"
    exit 0
fi
have_torch=0
/usr/bin/python3 -c 'import torch' 2>/dev/null && have_torch=1
kinds=${SAE_BENCH_KINDS:-small gpt2s}

rate() { awk '{for (i = 1; i < NF; i++) if ($(i+1) == "tok/s") print $i}'; }

run_c() { OPENBLAS_NUM_THREADS=2 "$bin" "$@" 2>/dev/null || echo "FAILED: $bin $*"; }
run_torch() {
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_MAX_=0 \
        MALLOC_TRIM_THRESHOLD_=100000000000 /usr/bin/python3 tests/bench/sae_ref.py "$@" 2>&1 |
        tail -1
}

echo "# SAE training throughput, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for kind in $kinds; do
    if [ "$kind" = gpt2s ]; then steps=${SAE_BENCH_STEPS:-2}; else steps=${SAE_BENCH_STEPS:-5}; fi
    declare -A c_rate=() t_rate=()
    for type in sae local local4 e2e e2e_ds; do
        case "$kind/$type" in
            gpt2s/e2e*) B=2 ;;
            gpt2s/*) B=4 ;;
            *) B=32 ;;
        esac
        line=$(run_c "$kind" "$type" "$B" "$steps")
        echo "$line"
        c_rate[$type]=$(echo "$line" | rate)
        if [ "$have_torch" = 1 ]; then
            line=$(run_torch "$kind" "$type" "$B" "$steps")
            echo "$line"
            t_rate[$type]=$(echo "$line" | rate)
        fi
    done
    for type in sae local local4 e2e e2e_ds; do
        c=${c_rate[$type]:-0} t=${t_rate[$type]:-0}
        case $type in sae | local*) target=3 ;; *) target=1.5 ;; esac
        if [ "$have_torch" = 1 ] && [ -n "$c" ] && [ -n "$t" ]; then
            awk -v k="$kind" -v ty="$type" -v c="$c" -v t="$t" -v g="$target" 'BEGIN {
                r = (t > 0) ? c / t : 0
                printf "ratio   %-6s %-7s C/PyTorch %5.2fx  (target >= %.1fx: %s)\n", k, ty, r, g,
                       (r >= g) ? "met" : "NOT met" }'
        fi
    done
    awk -v k="$kind" -v cl="${c_rate[local]:-0}" -v ce="${c_rate[e2e]:-0}" \
        -v cd="${c_rate[e2e_ds]:-0}" -v tl="${t_rate[local]:-0}" -v te="${t_rate[e2e]:-0}" 'BEGIN {
        if (ce > 0 && cd > 0) printf "time    %-6s e2e/local %.2fx, e2e_ds/local %.2fx per token (C)", k, cl / ce, cl / cd
        if (te > 0) printf "; PyTorch e2e/local %.2fx", tl / te
        printf "  (paper: e2e took 2-3.5x longer than local)\n" }'
    [ "$have_torch" = 1 ] || echo "skip - sae: PyTorch ratios need /usr/bin/python3 with torch"
    unset c_rate t_rate
done
exit $status
