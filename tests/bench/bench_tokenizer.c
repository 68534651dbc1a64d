/* bench_tokenizer.c: encode speed of the C tokenizer on one file.
 *
 *   bench_tokenizer TOKENIZER FILE [REPEATS] [--ids]
 *
 * Encodes the whole file in one tokenizer_encode call REPEATS times (default 3)
 * and prints the best run as "bytes=B tokens=N seconds=S mb_per_s=R" (the same
 * fields tests/ref/gpt2_encode.js --time prints for the JavaScript oracle).
 * With --ids it prints the ids instead, space-separated on one line. Run by
 * tests/bench/tokenizer.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "tok/tokenizer.h"
#include "util/error.h"
#include "util/log.h"

int main(int argc, char **argv) {
    int print_ids = argc > 1 && strcmp(argv[argc - 1], "--ids") == 0;
    if (print_ids) argc--;
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER FILE [REPEATS] [--ids]\n");
        return 2;
    }
    int repeats = argc == 4 ? atoi(argv[3]) : 3;
    if (repeats < 1) repeats = 1;
    struct tokenizer *tok = tokenizer_load(argv[1]);
    if (!tok) {
        fprintf(stderr, "bench_tokenizer: %s\n", err_msg());
        return 1;
    }
    size_t len;
    char *text = read_file_all(argv[2], 0, &len);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: %s\n", err_msg());
        tokenizer_free(tok);
        return 1;
    }
    double best = 1e300;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (int r = 0; r < repeats; r++) {
        n = 0;
        double t0 = now_seconds();
        if (tokenizer_encode(tok, text, len, &ids, &n, &cap) != 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", err_msg());
            return 1;
        }
        double dt = now_seconds() - t0;
        if (dt < best) best = dt;
    }
    if (print_ids) {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    } else {
        printf("bytes=%zu tokens=%zu seconds=%.4f mb_per_s=%.3f\n", len, n, best,
               (double)len / 1e6 / best);
    }
    free(ids);
    free(text);
    tokenizer_free(tok);
    return 0;
}
