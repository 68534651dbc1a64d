#!/usr/bin/env bash
# GPT-2 tokenizer encode speed (MB/s of UTF-8 input): the C encoder
# ($BUILD/bench/bench_tokenizer, the whole file in one tokenizer_encode call, best
# of 5) against the JavaScript oracle gpt-3-encoder@1.1.4 (tests/ref/gpt2_encode.js
# --time: encode calls only, text cut before each "\n" that precedes a letter,
# since its encode is quadratic in its input), same file, same machine, same
# invocation. Target: C at least 5x the oracle. Also prints, for information, the
# llama2.c tokenizer's speed on TinyStories when ../shared has it.
#
# Usage: bash tests/bench/tokenizer.sh   (BUILD=build-x picks the build tree;
# TOK_BENCH_FILE=path changes the text). Exits non-zero, saying why, when the
# data, the binary or the oracle is missing, or when the ratio is under target.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SHARED=${AUTOINTERP_SHARED:-../shared}
bin=$BUILD/bench/bench_tokenizer
file=${TOK_BENCH_FILE:-$SHARED/data/war-and-peace.txt}
gpt2=$SHARED/tokenizers/gpt2
target=5

fail() { echo "tokenizer bench: $*" >&2; echo "FAILED: $*"; exit 1; }
[ -f "$file" ] || fail "$file is absent (the benchmark text comes from ../shared/data)"
[ -f "$gpt2/encoder.json" ] || fail "$gpt2/encoder.json is absent"
[ -x "$bin" ] || fail "$bin is not built (make bench builds it)"
command -v node >/dev/null || fail "node is absent"
[ -f .deps/npm/node_modules/gpt-3-encoder/package.json ] ||
    fail "gpt-3-encoder is absent (bash scripts/setup.sh installs it into .deps/npm)"

field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

echo "# tokenizer encode speed, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# file $file ($(wc -c < "$file") bytes)"
c=$("$bin" "$gpt2" "$file" 5) || fail "$bin failed"
js=$(node tests/ref/gpt2_encode.js --time "$file") || fail "the gpt-3-encoder oracle failed"
echo "C gpt2:         $c"
echo "gpt-3-encoder:  $js"
c_tok=$(field "$c" tokens) js_tok=$(field "$js" tokens)
[ "$c_tok" = "$js_tok" ] || fail "token counts differ: C $c_tok, gpt-3-encoder $js_tok"
c_mbs=$(field "$c" mb_per_s) js_mbs=$(field "$js" mb_per_s)
ratio=$(awk -v c="$c_mbs" -v j="$js_mbs" 'BEGIN{printf "%.1f", c / j}')
echo "result  gpt2  C $c_mbs MB/s  gpt-3-encoder $js_mbs MB/s  ratio ${ratio}x (target >= ${target}x)"

tok512=$SHARED/models/stories260K/tok512.bin
stories=$SHARED/data/tinystories-valid-head.txt
if [ -f "$tok512" ] && [ -f "$stories" ]; then
    l=$("$bin" "$tok512" "$stories" 3) || fail "$bin on $tok512 failed"
    echo "info    llama2c (tok512, $(basename "$stories"), one call)  C $(field "$l" mb_per_s) MB/s"
fi
awk -v r="$ratio" -v t="$target" 'BEGIN{exit !(r >= t)}' || fail "ratio ${ratio}x is under the ${target}x target"
