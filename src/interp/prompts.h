/* prompts.h: the explainer and simulator prompt templates, loaded at run time.
 *
 * Prompts are data, not code: a directory (config interp.prompts, default
 * "prompts/") holds one plain-text file per message, and a run may point at
 * another directory to try other wording without rebuilding. Every result line
 * records the directory and the SHA-256 of the whole set, so two runs with
 * different prompts can never be mistaken for each other.
 *
 * Files (all required; see prompts/README.md for their wording):
 *   explain_system.txt     system message of the explainer
 *   explain_fewshot.txt    worked examples (turns, below)
 *   explain_user.txt       {{windows}} {{sparse_view}} required, {{n_windows}} optional
 *   explain_window.txt     one excerpt: {{rows}} required, {{index}} optional
 *   explain_sparse.txt     the zeros-filtered view: {{rows}} required, {{context}} optional
 *   simulate_system.txt    system message of the simulator (json, chat logprobs)
 *   simulate_fewshot.txt   worked examples
 *   simulate_user.txt      {{explanation}} {{tokens}} required, {{n_tokens}} optional
 *   simulate_logprobs.txt  the completion prompt of the echo-logprobs simulator:
 *                          {{explanation}} {{rows}} required
 *
 * Placeholders are "{{name}}" (lower case letters and '_'), replaced verbatim;
 * there is no escaping, conditionals or loops (the code builds repeated parts
 * such as rows and excerpts from the smaller templates). A placeholder the file
 * may not use, a required one that is missing, or a "{{" that does not form a
 * placeholder is an error naming the file (and line).
 *
 * Few-shot files: text before the first section is a comment (never sent);
 * then sections headed by a line "### user" or "### assistant", alternating,
 * starting with user and ending with assistant; each turn's text is the lines
 * below its header with leading and trailing blank lines removed. A file with
 * no sections means no worked examples. Few-shot files hold no placeholders.
 *
 * Set hash: SHA-256 over the files in the order above, each contributing
 * "<file name>\n<byte length>\n<content>".
 */
#ifndef AUTOINTERP_INTERP_PROMPTS_H
#define AUTOINTERP_INTERP_PROMPTS_H

#include <stddef.h>

enum prompt_id {
    PROMPT_EXPLAIN_SYSTEM,
    PROMPT_EXPLAIN_FEWSHOT,
    PROMPT_EXPLAIN_USER,
    PROMPT_EXPLAIN_WINDOW,
    PROMPT_EXPLAIN_SPARSE,
    PROMPT_SIMULATE_SYSTEM,
    PROMPT_SIMULATE_FEWSHOT,
    PROMPT_SIMULATE_USER,
    PROMPT_SIMULATE_LOGPROBS,
    PROMPT_N
};

struct prompt_turn {
    const char *role; /* "user" or "assistant" (static strings) */
    char *content;    /* owned */
};

struct prompt_set {
    char *dir;
    char *text[PROMPT_N];
    char sha256[65];
    struct prompt_turn *explain_shots;
    int n_explain_shots;
    struct prompt_turn *simulate_shots;
    int n_simulate_shots;
};

/* The default template directory. When it is not in the working directory, the
 * copy beside the binary is used: <bin>/../prompts (the build tree) or
 * <bin>/../share/autointerp/prompts (`make install`); ps->dir says which. */
#define PROMPT_DEFAULT_DIR "prompts"

/* Load and check every file of dir (PROMPT_DEFAULT_DIR: see above). On failure
 * *ps is left empty. */
int prompt_set_load(struct prompt_set *ps, const char *dir);
void prompt_set_free(struct prompt_set *ps);

/* "explain_user.txt" etc. */
const char *prompt_file_name(enum prompt_id id);

struct prompt_var {
    const char *name; /* without braces */
    const char *value;
};

/* Template id with its placeholders replaced (malloc'd). offsets (may be NULL)
 * gets, per var, the byte offset in the result where its value was first
 * inserted, or (size_t)-1 when the template does not use it. A placeholder
 * without a var is an error naming the file. */
char *prompt_render(const struct prompt_set *ps, enum prompt_id id, const struct prompt_var *vars,
                    int n_vars, size_t *offsets);

#endif
