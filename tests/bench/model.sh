#!/usr/bin/env bash
# model.sh: GPT-2 forward and lm-train step throughput, C against PyTorch.
#
# Runs $BUILD/bench/bench_model (our code) and tests/bench/model_ref.py (PyTorch
# doing the same computation) in this one invocation: PyTorch once at its best
# settings for this machine (2 threads, passive OpenMP waiting, no mmap churn in
# malloc) and once at its defaults. Prints tokens/s, ratios, and the achieved
# GFLOP/s as a fraction of the sgemm rate measured in the same run.
# BENCH_QUICK=1 does fewer repetitions.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bench/bench_model
if [ ! -x "$bin" ]; then
  echo "model: $bin is not built (run make bench)"
  exit 1
fi
quick=${BENCH_QUICK:+--quick}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

OPENBLAS_NUM_THREADS=2 "$bin" $quick > "$tmp/c.txt" || { echo "model: bench_model failed"; exit 1; }
have_torch=0
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  have_torch=1
  OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
    /usr/bin/python3 tests/bench/model_ref.py --threads 2 $quick > "$tmp/best.txt"
  /usr/bin/python3 tests/bench/model_ref.py $quick > "$tmp/default.txt"
else
  : > "$tmp/best.txt"; : > "$tmp/default.txt"
fi

awk -v have_torch=$have_torch '
  FILENAME ~ /c.txt$/       { c[$1] = $2 }
  FILENAME ~ /best.txt$/    { b[$1] = $2 }
  FILENAME ~ /default.txt$/ { d[$1] = $2 }
  END {
    printf "GPT-2 model benchmark: OpenBLAS threads %d, torch threads best %s / default %s\n",
           c["blas_threads"], (have_torch ? b["torch_threads"] : "-"), (have_torch ? d["torch_threads"] : "-")
    printf "sgemm 2048^3: %.1f GFLOP/s\n\n", c["sgemm_gflops"]
    printf "%-26s %10s %8s %7s %12s %6s %12s %6s\n", "", "C tok/s", "GFLOP/s", "%sgemm",
           "torch-best", "ratio", "torch-dflt", "ratio"
    n = split("fwd_8x128 fwd_1x1024 train", keys, " ")
    split("forward 8x128 (GPT-2 small)|forward 1x1024 (GPT-2 small)|lm-train step 4L 128w B16 T128", names, "|")
    for (i = 1; i <= n; i++) {
      k = keys[i]; t = c[k "_tok_s"]; g = c[k "_gflops"]
      rb = (have_torch && b[k "_tok_s"] > 0) ? sprintf("%.2fx", t / b[k "_tok_s"]) : "-"
      rd = (have_torch && d[k "_tok_s"] > 0) ? sprintf("%.2fx", t / d[k "_tok_s"]) : "-"
      printf "%-26s %10.0f %8.1f %6.0f%% %12.0f %6s %12.0f %6s\n", names[i], t, g,
             100 * g / c["sgemm_gflops"], b[k "_tok_s"], rb, d[k "_tok_s"], rd
    }
    printf "\ntargets: forward >= 1.0x torch-best and >= 80%% of sgemm; lm-train step >= 1.0x torch-best\n"
    if (!have_torch) print "(PyTorch absent: no ratios)"
  }' "$tmp/c.txt" "$tmp/best.txt" "$tmp/default.txt"
