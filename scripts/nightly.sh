#!/usr/bin/env bash
# Nightly job: run an experiment into a dated folder and compare it with the last
# successful night.
#
#   scripts/nightly.sh CONFIG [--root DIR] [--max-failure-rate F]
#
# Runs `autointerp run --results-dir ROOT/YYYY-MM-DD CONFIG` (ROOT defaults to
# results/nightly), then `autointerp compare` against the newest earlier night
# whose run succeeded, writing ROOT/YYYY-MM-DD/<experiment>/nightly-diff.md.
# Exits non-zero when a stage fails (1), or when the comparison flags a failure
# rate above F (default 0.1), a score that moved beyond its CI or a missing SAE (3).
# Rerunning on the same day resumes that day's run. Example cron line:
#   15 2 * * * cd /srv/autointerp && scripts/nightly.sh configs/gpt2-small-layer6.json >> results/nightly/cron.log 2>&1
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${AUTOINTERP_BIN:-bin/autointerp}
config=""
root=results/nightly
rate=0.1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --max-failure-rate) rate=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "nightly: unknown option '$1'" >&2; exit 2 ;;
    *) config=$1; shift ;;
  esac
done
[ -n "$config" ] || { echo "nightly: usage: scripts/nightly.sh CONFIG [--root DIR] [--max-failure-rate F]" >&2; exit 2; }
experiment=$("$bin" config check "$config" | awk -F'"' '/^\t"experiment"/ {print $4; exit}') ||
  { echo "nightly: $config is not a valid config" >&2; exit 1; }
[ -n "$experiment" ] || { "$bin" config check "$config" >/dev/null; exit 1; }
day=${NIGHTLY_DATE:-$(date -u +%F)}
cur=$root/$day/$experiment
mkdir -p "$root/$day"
echo "nightly: $(date -u +%FT%TZ) running $config into $cur"
"$bin" run --results-dir "$root/$day" "$config"
run_rc=$?
prev=""
for d in $(ls -1 "$root" 2>/dev/null | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' | sort -r); do
  [ "$d" \< "$day" ] || continue
  if [ -f "$root/$d/$experiment/.nightly-ok" ]; then prev=$root/$d/$experiment; break; fi
done
if [ -f "$cur/manifest.json" ]; then
  "$bin" compare --max-failure-rate "$rate" $prev "$cur" > "$cur/nightly-diff.md"
  cmp_rc=$?
  cat "$cur/nightly-diff.md"
else
  cmp_rc=1
fi
if [ $run_rc -ne 0 ]; then echo "nightly: the run failed (exit $run_rc)" >&2; exit 1; fi
touch "$cur/.nightly-ok"   # a finished run is the baseline for the next night
exit $cmp_rc
