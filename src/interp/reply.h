/* reply.h: what the explainer and the simulator answered, checked and decoded.
 *
 * Nothing a model returns is trusted: structured output may be ignored by the
 * server (llama.cpp), a list may have the wrong length or hold 11, a reply may
 * be cut at max_tokens. Every function here either returns usable values or
 * fails with a short category (for counting, e.g. "wrong_count") and a
 * sentence in err_msg() naming what was expected and what came back. A
 * failure is recorded as such and never becomes a score of zero.
 *
 * Explanations: the first non-empty line of the reply, with label prefixes
 * ("Explanation:", "Answer:", markdown bold around them), surrounding quotes
 * or backticks and one trailing period removed. Empty, or longer than the
 * configured maximum (bytes): a failure.
 *
 * json mode: the content must be {"activations": [...]} and nothing else (no
 * other key, no text after it; a bare array is also accepted) with exactly n
 * entries, each an integer 0..10 (3.0 counts as 3; 3.5, "3", null, -1 and 11
 * do not).
 *
 * Logprobs, chat (the json-mode reply, asked with logprobs and top_logprobs):
 * the content is first checked as in json mode, then the generated tokens
 * are laid end to end (their bytes where given) and must spell the content;
 * each number of the array is found in the content and the token holding its
 * first digit gives the distribution. Alternatives are compared after the part
 * of the token before the digit ("[" in "[3"); an alternative counts for value
 * v when it continues with optional spaces and the digits of v (0..10) and no
 * further digit. Splitting tokenizers (Llama: "1","0" for 10): an alternative
 * that ends right after "1" could be 1 or the start of 10. When the sampled
 * token is that "1", the next position's alternatives say how likely a "0"
 * followed, and that share of the "1" mass goes to 10; when something else was
 * sampled the continuation was never observed and the "1" mass counts as 1
 * (so 10 is underestimated only by models that split digits, and only where
 * they did not choose 1 or 10).
 *
 * Logprobs, completions with echo (vLLM; Bills et al.'s "all at once"): the
 * prompt lists every token as "token<TAB>unknown"; the distribution of what
 * the model would write where "unknown" stands is read from the echoed
 * prompt's top_logprobs. Placeholders are found by token text, not offsets
 * (servers count offsets in different units and spell byte tokens
 * differently): a token whose text is a tab (or ends one) followed by
 * "unknown", or "unknown" right after a token ending in a tab. There must be
 * exactly n of them (the rest of the prompt never holds a tab followed by
 * "unknown": explanations are put on one line without tabs). The "1"/"10"
 * rule above applies with "1" mass counted as 1 (no continuation exists).
 *
 * Expected value: sum of v·p(v) over the digit alternatives divided by their
 * total probability; no digit among the alternatives is a failure.
 */
#ifndef AUTOINTERP_INTERP_REPLY_H
#define AUTOINTERP_INTERP_REPLY_H

#include <stddef.h>

#include "llm/llm.h"

#define REPLY_PLACEHOLDER "unknown"

/* The cleaned explanation (malloc'd) of content. */
int reply_explanation(const char *content, int max_bytes, char **out, const char **category);

/* json mode: out[n] from resp (resp->json when the client parsed it, else
 * content). */
int reply_sim_json(const struct llm_response *resp, int n, double *out, const char **category);

/* Chat logprobs: out[n] expected values. */
int reply_sim_chat_logprobs(const struct llm_response *resp, int n, double *out,
                            const char **category);

/* Completions echo: out[n] expected values from the prompt's placeholders. */
int reply_sim_echo_logprobs(const struct llm_response *resp, int n, double *out,
                            const char **category);

/* Probability mass per value 0..10 at one position: tok's alternatives after
 * the first prefix_len bytes of its text; next (may be NULL) is the position
 * after it, used only when tok itself is exactly prefix + "1". Returns the
 * total mass (0 when no alternative is a digit value). */
double reply_digit_mass(const struct llm_token *tok, size_t prefix_len,
                        const struct llm_token *next, double mass[11]);

#endif
