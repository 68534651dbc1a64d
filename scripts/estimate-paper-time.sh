#!/usr/bin/env bash
# How long a sweep config would train on this machine, from the SAE benchmark's
# measured GPT-2-small rates (results/bench/sae.txt, written by `BENCH=sae make
# bench`): local SAEs at the lockstep rate (4 sharing each forward pass, as
# `train` groups them), e2e and e2e+ds at their single-SAE rates (an upper
# bound: in a group they share the original model's pass). Prints one line per
# SAE type and the total, in days of wall time.
#
# Usage: scripts/estimate-paper-time.sh [CONFIG] [SAE_BENCH_TXT]
#        (defaults: configs/gpt2-small-layer6.json, results/bench/sae.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/gpt2-small-layer6.json}
bench=${2:-results/bench/sae.txt}
[ -f "$bench" ] || { echo "estimate: $bench is absent: run BENCH=sae make bench first" >&2; exit 1; }
[ -f "$config" ] || { echo "estimate: $config is absent" >&2; exit 1; }
python3 - "$config" "$bench" <<'EOF'
import json, re, sys
config, bench = sys.argv[1], sys.argv[2]
sae = json.load(open(config)).get("sae", {})
tokens = float(sae.get("train_tokens", 0))
if tokens <= 0:
    sys.exit(f"estimate: {config}: sae.train_tokens is missing")
layers = len(sae.get("layers", [0])) * len(sae.get("seeds", [0]))
rate = {}
for line in open(bench):
    m = re.match(r"c\s+gpt2s\s+(\S+)\s.*?([0-9.]+) tok/s", line)
    if m:
        rate[m.group(1)] = float(m.group(2))
stamp = next((l.strip() for l in open(bench) if l.startswith("#")), "")
print(f"{config}: {tokens:,.0f} training tokens per SAE, {layers} layer x seed set(s)")
print(f"rates from {bench} {stamp}")
total = 0.0
for kind, key in (("local", "local4"), ("e2e", "e2e"), ("e2e_ds", "e2e_ds")):
    if kind not in sae.get("types", []):
        continue
    n = len(sae.get(kind, {}).get("lambdas", [])) * layers
    if key not in rate:
        sys.exit(f"estimate: {bench} has no 'c gpt2s {key}' line")
    secs = n * tokens / rate[key]  # SAE-tokens / SAE-tokens per second
    total += secs
    print(f"  {kind:7s} {n:3d} SAEs at {rate[key]:8.1f} tok/s: {secs / 86400:8.1f} days")
print(f"  total   {total / 86400:8.1f} days of wall time on this machine")
EOF
