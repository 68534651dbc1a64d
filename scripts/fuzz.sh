#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer harnesses in tests/fuzz with clang and run each
# for a bounded time (`make fuzz` runs this).
#
#   FUZZ_SECONDS=60 bash scripts/fuzz.sh              every harness, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh safetensors config   just these
#   FUZZ_BUILD_ONLY=1 bash scripts/fuzz.sh            build, do not run
#
# The library is compiled again by clang into build-fuzz/clang/ (the Makefile's own
# rules with clang, ASan, UBSan and coverage instrumentation), not taken from the
# gcc-built libautointerp.a. Each harness's corpus lives in build-fuzz/clang/corpus/
# <name> (what the fuzzer learns stays out of git), seeded from the committed
# tests/fuzz/corpus/<name>. A crash, leak, timeout or out-of-memory input is
# copied to tests/fixtures/fuzz/new/<name>/: triage it, then move it to
# tests/fixtures/fuzz/<name>/ once fixed (test_fuzz_regressions replays that
# folder in every test run) or to tests/fixtures/fuzz/pending/<name>/ when the
# fix belongs to another module's owner. Exit status 1 when anything was found.
set -u
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
B=${FUZZ_BUILD:-build-fuzz/clang}
ALL="config safetensors llama_model gpt2_model saelens llama2c_tok gpt2_bpe tok_encode llm_parse jsonl h5"
NAMES=${*:-$ALL}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (apt-get install clang libclang-rt-14-dev)"; exit 2; }

PKGS="hdf5 openblas libcjson libcurl"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
BASE="-O1 -g -march=native -std=c11 -D_GNU_SOURCE -Isrc $(pkg-config --cflags $PKGS gsl)"
LIBS="$(pkg-config --libs $PKGS) -lgsl -lm -lpthread"
# Clang warns where gcc does not (and -Wno-format-truncation is gcc's): the
# library is kept warning-free by the gcc build, so here warnings are not errors.
LIB_CFLAGS="$BASE $SAN -fsanitize=fuzzer-no-link -w -DAUTOINTERP_VERSION='\"fuzz\"'"

echo "== building the library with $CC into $B"
make -s -j2 BUILD="$B" CC="$CC" CFLAGS="$LIB_CFLAGS" "$B/libautointerp.a" || exit 2
for n in $NAMES; do
    src=tests/fuzz/fuzz_$n.c
    [ -f "$src" ] || { echo "fuzz.sh: no harness $src"; exit 2; }
    if [ ! "$B/fuzz_$n" -nt "$src" ] || [ ! "$B/fuzz_$n" -nt "$B/libautointerp.a" ] ||
       [ ! "$B/fuzz_$n" -nt tests/fuzz/fuzz_common.h ]; then
        $CC $BASE $SAN -fsanitize=fuzzer -Wall -Wextra -Werror -Itests/fuzz \
            -o "$B/fuzz_$n" "$src" "$B/libautointerp.a" $LIBS || exit 2
    fi
done
[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit 0

# Bigger inputs only slow the search; the model and HDF5 seeds need room.
max_len() {
    case $1 in
    llama_model | gpt2_model | saelens | h5) echo 16384 ;;
    gpt2_bpe | llama2c_tok | tok_encode) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

export OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
found=0
for n in $NAMES; do
    corpus=$B/corpus/$n crashes=$B/crashes/$n
    mkdir -p "$corpus" "$crashes"
    seeds=tests/fuzz/corpus/$n
    dict=tests/fuzz/$n.dict
    args=(-max_total_time="$SECS" -max_len="$(max_len "$n")" -timeout=10 -rss_limit_mb=4096
          -artifact_prefix="$crashes/" -print_final_stats=1)
    [ -f "$dict" ] && args+=(-dict="$dict")
    # HDF5 itself allocates what a corrupt file claims (a 4 GiB vlen string):
    # lazy and harmless in a real run, so only a larger claim is reported. The
    # crashes and hangs of libhdf5 on corrupt files happen in h5_open_ro's checking
    # child (src/io/h5.h), which the harness sees as a clean refusal; a crash here
    # is one in our code.
    [ "$n" = h5 ] && args+=(-malloc_limit_mb=8192)
    echo "== fuzz_$n for ${SECS}s"
    "$B/fuzz_$n" "${args[@]}" "$corpus" "$seeds" > "$B/fuzz_$n.log" 2>&1
    rc=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+.*DONE' "$B/fuzz_$n.log" |
        sed 's/^/   /'
    shopt -s nullglob
    arts=("$crashes"/crash-* "$crashes"/leak-* "$crashes"/timeout-* "$crashes"/oom-*)
    shopt -u nullglob
    if [ "$rc" -ne 0 ] || [ ${#arts[@]} -gt 0 ]; then
        found=1
        mkdir -p "tests/fixtures/fuzz/new/$n"
        for a in "${arts[@]}"; do
            mv "$a" "tests/fixtures/fuzz/new/$n/"
            echo "   FOUND: tests/fixtures/fuzz/new/$n/$(basename "$a")"
        done
        grep -m3 -E 'ERROR: |runtime error|fuzz invariant|SUMMARY' "$B/fuzz_$n.log" | sed 's/^/   /'
        echo "   (full log: $B/fuzz_$n.log)"
    fi
done
[ "$found" -eq 0 ] && echo "fuzz.sh: nothing found" || echo "fuzz.sh: new inputs under tests/fixtures/fuzz/new/"
exit "$found"
