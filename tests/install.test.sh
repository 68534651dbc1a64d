#!/usr/bin/env bash
# `make install` gives a binary that finds its prompt templates from any working
# directory, and `config check` names the directory it will use (or says where
# it looked). Prints ok/not ok lines for scripts/run-tests.sh.
set -u
cd "$(dirname "$0")/.."
repo=$PWD
bin=${AUTOINTERP_BIN:-$repo/bin/autointerp}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { if eval "$2"; then echo "ok - $1"; else echo "not ok - $1"; sed 's/^/# /' "$tmp/err" 2>/dev/null | head -5; fi; }
mkdir -p "$tmp/empty" "$tmp/alone" "$tmp/stage/usr/bin" "$tmp/stage/usr/share/autointerp"
# `make install` of the binary under test (-o: never rebuilt here)
make -s -o "$bin" install BIN="$bin" DESTDIR="$tmp/stage" PREFIX=/usr > "$tmp/err" 2>&1
check "make install into a staging directory" "[ -x $tmp/stage/usr/bin/autointerp ] && [ -f $tmp/stage/usr/share/autointerp/prompts/explain_user.txt ]"
share=$tmp/stage/usr/share/autointerp
(cd "$tmp/empty" && "$tmp/stage/usr/bin/autointerp" config check "$share/configs/demo.json" > "$tmp/out" 2> "$tmp/err")
check "installed binary: config check passes from an empty directory" "[ $? -eq 0 ]"
check "installed binary uses the installed templates" "grep -q '^prompts: $share/prompts ' $tmp/err"
(cd "$tmp/empty" && "$bin" config check "$repo/configs/demo.json" > "$tmp/out" 2> "$tmp/err")
check "build-tree binary uses the tree's templates from elsewhere" "grep -q '^prompts: $repo/prompts ' $tmp/err"
(cd "$repo" && "$bin" config check configs/demo.json > "$tmp/out" 2> "$tmp/err")
check "the working directory's templates come first" "grep -q '^prompts: prompts ' $tmp/err"
cp "$bin" "$tmp/alone/autointerp"
(cd "$tmp/empty" && "$tmp/alone/autointerp" config check "$repo/configs/demo.json" > "$tmp/out" 2> "$tmp/err")
rc=$?
check "a binary without templates fails config check" "[ $rc -ne 0 ]"
check "... saying where it looked" "grep -q 'beside the binary (../prompts) or installed (../share/autointerp/prompts); set interp.prompts' $tmp/err"
# a template directory with a file missing: the error names the file
cp -r "$repo/prompts" "$tmp/myprompts" && rm "$tmp/myprompts/simulate_user.txt"
python3 -c "
import json; c = json.load(open('$repo/configs/demo.json')); c.setdefault('interp', {})['prompts'] = '$tmp/myprompts'
json.dump(c, open('$tmp/cfg.json', 'w'))"
(cd "$tmp/empty" && "$bin" config check "$tmp/cfg.json" > "$tmp/out" 2> "$tmp/err")
rc=$?
check "a directory missing a template fails, naming the file" "[ $rc -ne 0 ] && grep -q 'myprompts/simulate_user.txt' $tmp/err"
