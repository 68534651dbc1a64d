/* run.c: a stage over several SAEs (interp_run in interp.h): the loop that the
 * CLI commands and the pipeline share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp/interp.h"
#include "interp/interp_internal.h"
#include "io/atomic.h"
#include "tok/tokenizer.h"
#include "util/error.h"

static const char *const kinds[] = {"explanations", "simulations", "scores"};

static void add_counts(struct interp_counts *t, const struct interp_counts *c) {
    t->n_features += c->n_features;
    t->n_done_before += c->n_done_before;
    t->n_ok += c->n_ok;
    t->n_no_score += c->n_no_score;
    t->n_failed += c->n_failed;
    t->n_pending += c->n_pending;
    for (int i = 0; i < c->n_reasons; i++)
        for (int k = 0; k < c->reasons[i].n; k++) interp_counts_add_reason(t, c->reasons[i].name);
    interp_add_stats(&t->llm, &c->llm);
}

static int make_dirs(const char *run_dir, enum interp_stage stage) {
    size_t len = strlen(run_dir) + 32;
    char *d = xmalloc(len);
    if (!d) return -1;
    snprintf(d, len, "%s/%s", run_dir, kinds[stage]);
    int rc = mkdir_p(d);
    free(d);
    return rc;
}

static int run_one(enum interp_stage stage, const struct interp_settings *s,
                   const struct interp_job *job, const struct tokenizer *tok,
                   const struct render_vocab *vocab, const char *examples_path,
                   struct interp_counts *c) {
    struct examples ex;
    if (examples_load(examples_path, &ex) != 0) return -1;
    if (tok && ex.tokenizer && *ex.tokenizer && strcmp(ex.tokenizer, tokenizer_name(tok)) != 0) {
        err_set("%s: the examples were made with the %s tokenizer, but %s is a %s tokenizer",
                examples_path, ex.tokenizer, job->tokenizer, tokenizer_name(tok));
        examples_free(&ex);
        return -1;
    }
    char *sae = interp_sae_name(examples_path);
    char *expl = sae ? interp_output_path(job->run_dir, kinds[0], sae) : NULL;
    char *sim = sae ? interp_output_path(job->run_dir, kinds[1], sae) : NULL;
    char *scores = sae ? interp_output_path(job->run_dir, kinds[2], sae) : NULL;
    int rc = expl && sim && scores ? 0 : -1;
    if (rc == 0 && stage == INTERP_EXPLAIN) rc = interp_explain(s, &ex, vocab, expl, c);
    else if (rc == 0 && stage == INTERP_SIMULATE) rc = interp_simulate(s, &ex, vocab, expl, sim, c);
    else if (rc == 0) rc = interp_score(s, &ex, expl, sim, scores, c);
    if (rc != 0) err_prefix("%s", sae ? sae : examples_path);
    free(expl);
    free(sim);
    free(scores);
    free(sae);
    examples_free(&ex);
    return rc;
}

int interp_run(enum interp_stage stage, const struct interp_settings *s,
               const struct interp_job *job, struct interp_counts *per_sae,
               struct interp_counts *total) {
    memset(total, 0, sizeof *total);
    if (make_dirs(job->run_dir, stage) != 0) return -1;
    struct tokenizer *tok = NULL;
    struct render_vocab *vocab = NULL;
    if (stage != INTERP_SCORE) {
        if (!job->tokenizer || !*job->tokenizer)
            return err_set("a tokenizer is needed to show tokens to the LLM (data.tokenizer)");
        tok = tokenizer_load(job->tokenizer);
        vocab = tok ? render_vocab_from_tokenizer(tok) : NULL;
        if (!vocab) {
            tokenizer_free(tok);
            return -1;
        }
    }
    int rc = 0;
    for (int i = 0; i < job->n_examples && rc == 0; i++) {
        struct interp_counts c;
        memset(&c, 0, sizeof c);
        rc = run_one(stage, s, job, tok, vocab, job->examples[i], &c);
        add_counts(total, &c);
        if (per_sae) per_sae[i] = c;
    }
    render_vocab_free(vocab);
    tokenizer_free(tok);
    return rc;
}
