/* cmd_tokenize.c: `autointerp tokenize`: text files to an HDF5 token dataset.
 *
 * The document rules (separator, BOM, CRLF, BOS/EOT) live in src/tok/corpus.c;
 * this file parses options, optionally holds out whole documents for evaluation,
 * writes the dataset(s) atomically and prints a one-table summary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tok/corpus.h"
#include "tok/dataset.h"
#include "tok/tokenizer.h"
#include "util/error.h"
#include "util/log.h"

static const struct cli_opt opts[] = {
    {"tokenizer", 't', "PATH", "GPT-2 tokenizer directory or llama2.c tokenizer .bin (required)"},
    {"out", 'o', "OUT.h5", "token dataset to write (required)"},
    {"separator", 0, "STR", "document separator (default \"<|endoftext|>\"; \\n escapes allowed)"},
    {"eval-out", 0, "EVAL.h5", "also hold out whole documents into this dataset"},
    {"eval-fraction", 0, "F", "fraction of documents held out with --eval-out (default 0.1)"},
    {"seed", 0, "N", "seed of the held-out document choice (default 0)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "tokenize",
    .summary = "turn text files into an HDF5 token dataset",
    .usage = "autointerp tokenize -t TOKENIZER -o OUT.h5 [options] TEXT...",
    .description =
        "Each file is split into documents at the separator; a UTF-8 byte-order mark is\n"
        "dropped, CRLF becomes LF, surrounding whitespace is trimmed. GPT-2 documents end\n"
        "with EOT (50256); llama2.c documents start with BOS (1). The dataset stores ids as\n"
        "uint16 when the vocabulary fits, with the tokenizer, vocab size, EOT/BOS ids and\n"
        "document offsets as attributes (`autointerp inspect OUT.h5` shows them).",
    .opts = opts,
    .min_positional = 1,
    .max_positional = -1,
};

/* "\n%\n" written on a command line arrives as backslash-n: unescape \n \t \\. */
static char *unescape(const char *s) {
    char *out = xmalloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
        } else
            *o++ = *s;
    }
    *o = 0;
    return out;
}

static char *join_paths(char **paths, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(paths[i]) + 1;
    char *s = xmalloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, "\n");
        strcat(s, paths[i]);
    }
    return s;
}

static int write_buf(const char *path, const struct token_buf *b, const struct tokenizer *tok,
                     const char *sources) {
    struct token_dataset_meta meta = {
        .tokenizer = tokenizer_name(tok),
        .vocab_size = tokenizer_vocab_size(tok),
        .eot_id = tokenizer_kind(tok) == TOKENIZER_GPT2 ? tokenizer_eot_id(tok) : -1,
        .bos_id = tokenizer_kind(tok) == TOKENIZER_LLAMA2C ? tokenizer_bos_id(tok) : -1,
        .sources = sources,
    };
    return token_dataset_write(path, b->ids, (int64_t)b->n, b->doc_offsets, (int64_t)b->n_docs,
                               &meta);
}

int cmd_tokenize(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    const char *tok_path = cli_value(&a, "tokenizer"), *out = cli_value(&a, "out");
    const char *eval_out = cli_value(&a, "eval-out");
    double eval_fraction;
    long long seed;
    rc = 0;
    if (!tok_path) rc = cli_usage_error(&cmd, "--tokenizer is required");
    else if (!out) rc = cli_usage_error(&cmd, "--out is required");
    else if (cli_double(&a, "eval-fraction", 0.1, &eval_fraction) != 0 ||
             cli_int(&a, "seed", 0, 0, 4294967295LL, &seed) != 0)
        rc = 2;
    else if (eval_fraction <= 0 || eval_fraction >= 1)
        rc = cli_usage_error(&cmd, "--eval-fraction must be between 0 and 1, got %g", eval_fraction);
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    char *separator = unescape(cli_value(&a, "separator") ? cli_value(&a, "separator") : "<|endoftext|>");
    char *sources = join_paths(a.positional, a.n_positional);
    struct tokenizer *tok = tokenizer_load(tok_path);
    struct token_buf all = {0}, train = {0}, eval = {0};
    double t0 = now_seconds();
    if (!tok || !separator || !sources)
        rc = 1;
    else if (corpus_tokenize_files(tok, (const char *const *)a.positional, a.n_positional,
                                   separator, 0, &all) != 0)
        rc = 1;
    double secs = now_seconds() - t0;
    if (rc == 0 && all.n == 0) {
        err_set("no text to tokenize in the given files");
        rc = 1;
    }
    if (rc == 0 && eval_out) {
        if (corpus_split(&all, eval_fraction, (uint64_t)seed, &train, &eval) != 0 ||
            write_buf(out, &train, tok, sources) != 0 || write_buf(eval_out, &eval, tok, sources) != 0)
            rc = 1;
    } else if (rc == 0 && write_buf(out, &all, tok, sources) != 0)
        rc = 1;
    if (rc == 0) {
        printf("tokenizer   %s (vocab %d)\n", tokenizer_name(tok), tokenizer_vocab_size(tok));
        printf("files       %d, %.2f MB of text\n", a.n_positional, all.n_bytes / 1e6);
        printf("documents   %zu\n", all.n_docs);
        printf("tokens      %zu (%.2f bytes/token), %.1f MB/s\n", all.n,
               all.n ? (double)all.n_bytes / (double)all.n : 0.0, secs > 0 ? all.n_bytes / 1e6 / secs : 0.0);
        if (eval_out) {
            printf("wrote       %s: %zu documents, %zu tokens\n", out, train.n_docs, train.n);
            printf("wrote       %s: %zu documents, %zu tokens (held out)\n", eval_out, eval.n_docs, eval.n);
        } else
            printf("wrote       %s\n", out);
    } else
        cli_fail();
    token_buf_free(&all);
    token_buf_free(&train);
    token_buf_free(&eval);
    tokenizer_free(tok);
    free(separator);
    free(sources);
    cli_args_free(&a);
    return rc ? 1 : 0;
}
