#!/usr/bin/env bash
# scripts/nightly.sh end to end on stories260K: two nights into dated folders, the
# second compared with the first; a night whose run fails exits 1 and does not
# become the baseline. Prints ok/not ok/skip lines for scripts/run-tests.sh.
set -u
cd "$(dirname "$0")/.."
shared=${AUTOINTERP_SHARED:-../shared}
if [ ! -f "$shared/models/stories260K/stories260K.bin" ] || [ ! -f "$shared/data/tinystories-valid-head.txt" ]; then
  echo "skip - nightly: $shared/models/stories260K or its data is absent"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/night.json" <<JSON
{"experiment": "night", "seed": 3,
 "data": {"tokenizer": "$shared/models/stories260K/tok512.bin", "train_text": ["$shared/data/tinystories-valid-head.txt"], "context": 64},
 "model": {"path": "$shared/models/stories260K/stories260K.bin"},
 "sae": {"layers": [2], "types": ["local", "e2e"], "ratio": 4, "local": {"lambdas": [2]}, "e2e": {"lambdas": [0.5]},
         "train_tokens": 2048, "eval_tokens": 2048, "batch": 4},
 "extract": {"n_features": 8, "top_k": 6, "n_random": 2, "window": 16, "offset": 8},
 "interp": {"n_explain": 3, "n_score_top": 3, "n_score_random": 2},
 "report": {"resamples": 2000}}
JSON
check() { if eval "$2"; then echo "ok - $1"; else echo "not ok - $1"; fi; }
NIGHTLY_DATE=2026-01-01 scripts/nightly.sh "$tmp/night.json" --root "$tmp/nightly" > "$tmp/n1.log" 2>&1
rc1=$?
check "first night exits 0" "[ $rc1 -eq 0 ]"
check "first night is a baseline" "[ -f $tmp/nightly/2026-01-01/night/.nightly-ok ]"
check "first night has a diff" "grep -q 'previous: (none: first run)' $tmp/nightly/2026-01-01/night/nightly-diff.md"
NIGHTLY_DATE=2026-01-02 scripts/nightly.sh "$tmp/night.json" --root "$tmp/nightly" > "$tmp/n2.log" 2>&1
rc2=$?
check "second night exits 0 (same config and seed: same scores)" "[ $rc2 -eq 0 ]"
check "second night compares with the first" "grep -q 'previous: $tmp/nightly/2026-01-01/night' $tmp/nightly/2026-01-02/night/nightly-diff.md"
check "identical nights are not flagged" "grep -q '^OK: 0 flags' $tmp/nightly/2026-01-02/night/nightly-diff.md"
# a night whose model is missing fails its run: exit 1, no baseline
sed 's|stories260K.bin|missing.bin|' "$tmp/night.json" > "$tmp/broken.json"
NIGHTLY_DATE=2026-01-03 scripts/nightly.sh "$tmp/broken.json" --root "$tmp/nightly" > "$tmp/n3.log" 2>&1
rc3=$?
check "a failed run exits 1" "[ $rc3 -eq 1 ]"
check "a failed run is not a baseline" "[ ! -f $tmp/nightly/2026-01-03/night/.nightly-ok ]"
check "the failed night's diff says so" "grep -q 'did not finish' $tmp/nightly/2026-01-03/night/nightly-diff.md"
