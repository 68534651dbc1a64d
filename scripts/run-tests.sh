#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests and every tests/*.test.sh script, and
# prints one closing line "N passed, N failed, N skipped" that CI reads.
#
# A cmocka binary reports its own counts; a binary that dies without a summary
# (a crash, a sanitizer abort) counts as one failure. Test scripts are TAP-ish:
# each prints "ok - name", "not ok - name" or "skip - name: reason" lines.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export AUTOINTERP_BIN=${AUTOINTERP_BIN:-$PWD/bin/autointerp}
passed=0 failed=0 skipped=0
failed_names=()
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"
only=${TESTS:-}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if [ -n "$only" ] && [[ ! " $only " == *" $name "* ]]; then continue; fi
    start=$(date +%s.%N)
    "$t" > "$log_dir/$name.log" 2>&1
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$log_dir/$name.log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:.*/\1/p' "$log_dir/$name.log" | tail -1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s), listed below:.*/\1/p' "$log_dir/$name.log" | tail -1)
    p=${p:-0} f=${f:-0} s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1   # died without reporting a failure: count the binary itself
        echo "  $name exited with status $rc without a cmocka summary"
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    status=ok; [ "$f" -gt 0 ] && status=FAIL && failed_names+=("$name")
    printf '%-34s %4s  %3d passed %3d failed %3d skipped  %6ss\n' "$name" "$status" "$p" "$f" "$s" "$secs"
    grep -h '^\[  REASON  \]' "$log_dir/$name.log" | sed 's/^\[  REASON  \]/      skip:/' | sort -u
    if [ "$f" -gt 0 ]; then
        grep -E '^\[  (ERROR|FAILED|  LINE)|^\[   LINE   \]|ERROR|runtime error|Sanitizer' "$log_dir/$name.log" | head -20 | sed 's/^/      /'
    fi
done

for t in tests/*.test.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .test.sh)
    if [ -n "$only" ] && [[ ! " $only " == *" $name "* ]]; then continue; fi
    bash "$t" > "$log_dir/$name.log" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$log_dir/$name.log")
    f=$(grep -c '^not ok ' "$log_dir/$name.log")
    s=$(grep -c '^skip ' "$log_dir/$name.log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    status=ok; [ "$f" -gt 0 ] && status=FAIL && failed_names+=("$name")
    printf '%-34s %4s  %3d passed %3d failed %3d skipped\n' "$name" "$status" "$p" "$f" "$s"
    grep -h '^skip ' "$log_dir/$name.log" | sed 's/^/      /'
    [ "$f" -gt 0 ] && grep -h '^not ok \|^#' "$log_dir/$name.log" | head -20 | sed 's/^/      /'
done

[ ${#failed_names[@]} -gt 0 ] && echo "failing: ${failed_names[*]} (logs in $log_dir)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
