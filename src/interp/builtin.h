/* builtin.h: the offline explainer and simulator, a deterministic baseline.
 *
 * The builtin provider lets the whole pipeline run on a machine with no LLM
 * and gives every report a floor to compare real explainers against. It is a
 * real (if simple) method, not a stub:
 *
 * Explainer (sees the explain windows only: display tokens and activations).
 *   Each occurrence of a token with activation a > 0 adds a/max to its key
 *   (the display string without leading "␣", lower-cased, so " The" and "the"
 *   count together), and the same amount to the key of the token before it (its
 *   context). The explanation names up to 5 keys whose weight is at least 15%
 *   of the heaviest, each with its share of all activation mass, and up to 3
 *   context keys that precede at least a quarter of that mass:
 *       the tokens "cat" (61%), "dog" (22%), mostly right after "the", "a"
 *   Quotes and backslashes inside a key are written \" and \\.
 *
 * Simulator (sees the explanation and the display tokens, nothing else).
 *   Quoted strings ("...", “...”, «...») are tokens the explanation names; an
 *   optional "(NN%)" after one gives its weight (else all weigh the same);
 *   quoted strings after the first unquoted "after", "following" or "preceded
 *   by" are context. A token whose key equals a named key gets 2 + 8·w (w =
 *   its weight over the largest, rounded, so the main token gets 10), one more
 *   (capped at 10) when the token before it is a context key; a context token
 *   itself gets 1; everything else 0. An explanation without quoted names
 *   (typical of LLM explainers) falls back to its words of three or more
 *   letters, minus common function words, each matching tokens whose key is
 *   the word or a prefix of it (of at least three letters) with value 6.
 *
 * It never sees a true activation of a window it scores, and that is
 * structural: builtin_simulate's arguments are the explanation and the token
 * strings, and the provider's request (struct builtin_simulate_input) carries
 * nothing else. A test scrambles the true activations of the scored windows
 * and checks that the predictions do not move.
 *
 * As an llm_provider it answers requests whose `user` points to a struct
 * builtin_request: explanations as plain text, simulations as the same JSON
 * object the json simulator mode asks real models for, {"activations": [...]},
 * so the stages parse builtin and HTTP replies with the same code.
 */
#ifndef AUTOINTERP_INTERP_BUILTIN_H
#define AUTOINTERP_INTERP_BUILTIN_H

#include "llm/llm.h"

struct builtin_window {
    const char *const *tokens; /* [n] display strings (render.h) */
    const float *acts;         /* [n] true activations of this EXPLAIN window */
    int n;
};

/* The explanation (malloc'd) of a feature from its explain windows; -1 with
 * err_msg when no token is active in them. */
int builtin_explain(const struct builtin_window *w, int n_windows, char **explanation);

/* Predictions out[n], integers 0..10, from the explanation and tokens alone. */
int builtin_simulate(const char *explanation, const char *const *tokens, int n, int *out);

enum builtin_task { BUILTIN_EXPLAIN = 1, BUILTIN_SIMULATE = 2 };

struct builtin_explain_input {
    const struct builtin_window *windows;
    int n_windows;
};

struct builtin_simulate_input {
    const char *explanation;
    const char *const *tokens;
    int n;
};

/* What llm_request.user points to for the builtin provider. */
struct builtin_request {
    enum builtin_task task;
    const struct builtin_explain_input *explain;   /* task BUILTIN_EXPLAIN */
    const struct builtin_simulate_input *simulate; /* task BUILTIN_SIMULATE */
};

/* The provider ("builtin") for llm_client_new_with_provider. */
struct llm_provider builtin_provider(void);

#endif
