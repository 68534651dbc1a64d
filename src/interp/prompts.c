/* prompts.c: loading, checking, hashing and filling the prompt templates.
 *
 * Checks happen once at load so that a typo in a template stops the run before
 * the first request is paid for; rendering then only looks names up. Templates
 * are small (a few KB), so rendering scans the text each time.
 */
#include "interp/prompts.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic.h"
#include "util/error.h"
#include "util/sha256.h"

#define PROMPT_MAX_BYTES (1u << 20)
#define NAME_MAX_LEN 32

struct file_spec {
    const char *file;
    const char *required[3];
    const char *optional[2];
};

static const struct file_spec specs[PROMPT_N] = {
    [PROMPT_EXPLAIN_SYSTEM] = {"explain_system.txt", {0}, {0}},
    [PROMPT_EXPLAIN_FEWSHOT] = {"explain_fewshot.txt", {0}, {0}},
    [PROMPT_EXPLAIN_USER] = {"explain_user.txt", {"windows", "sparse_view"}, {"n_windows"}},
    [PROMPT_EXPLAIN_WINDOW] = {"explain_window.txt", {"rows"}, {"index"}},
    [PROMPT_EXPLAIN_SPARSE] = {"explain_sparse.txt", {"rows"}, {"context"}},
    [PROMPT_SIMULATE_SYSTEM] = {"simulate_system.txt", {0}, {0}},
    [PROMPT_SIMULATE_FEWSHOT] = {"simulate_fewshot.txt", {0}, {0}},
    [PROMPT_SIMULATE_USER] = {"simulate_user.txt", {"explanation", "tokens"}, {"n_tokens"}},
    [PROMPT_SIMULATE_LOGPROBS] = {"simulate_logprobs.txt", {"explanation", "rows"}, {0}},
};

const char *prompt_file_name(enum prompt_id id) {
    return (unsigned)id < PROMPT_N ? specs[id].file : "?";
}

static int in_list(const char *const *list, int n, const char *name) {
    for (int i = 0; i < n && list[i]; i++)
        if (strcmp(list[i], name) == 0) return 1;
    return 0;
}

/* The placeholder starting at p ("{{"): its name copied to name, its total
 * length returned; 0 when malformed. */
static size_t placeholder_at(const char *p, char name[NAME_MAX_LEN]) {
    size_t k = 2;
    while ((p[k] >= 'a' && p[k] <= 'z') || p[k] == '_') {
        if (k - 2 >= NAME_MAX_LEN - 1) return 0;
        k++;
    }
    if (k == 2 || p[k] != '}' || p[k + 1] != '}') return 0;
    memcpy(name, p + 2, k - 2);
    name[k - 2] = 0;
    return k + 2;
}

static int line_of(const char *text, const char *at) {
    int line = 1;
    for (const char *c = text; c < at; c++) line += *c == '\n';
    return line;
}

static void allowed_list(const struct file_spec *s, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < 3 && s->required[i]; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", *out ? ", " : "", s->required[i]);
    for (int i = 0; i < 2 && s->optional[i]; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", *out ? ", " : "", s->optional[i]);
    if (!*out) snprintf(out, cap, "none");
}

/* Every placeholder allowed, every required one present. */
static int check_template(const char *path, const struct file_spec *s, const char *text) {
    int seen[3] = {0};
    for (const char *p = strstr(text, "{{"); p; p = strstr(p, "{{")) {
        char name[NAME_MAX_LEN];
        size_t len = placeholder_at(p, name);
        if (len == 0)
            return err_set("%s:%d: \"{{\" does not start a placeholder {{name}} (near \"%.20s\")",
                           path, line_of(text, p), p);
        int req = -1;
        for (int i = 0; i < 3 && s->required[i]; i++)
            if (strcmp(s->required[i], name) == 0) req = i;
        if (req >= 0) seen[req] = 1;
        else if (!in_list(s->optional, 2, name)) {
            char allowed[128];
            allowed_list(s, allowed, sizeof allowed);
            return err_set("%s:%d: unknown placeholder {{%s}} (this file may use: %s)", path,
                           line_of(text, p), name, allowed);
        }
        p += len;
    }
    for (int i = 0; i < 3 && s->required[i]; i++)
        if (!seen[i]) return err_set("%s: missing placeholder {{%s}}", path, s->required[i]);
    return 0;
}

/* ---- few-shot turns ---- */

static const char *header_role(const char *line, size_t len) {
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        len--;
    if (len == 8 && memcmp(line, "### user", 8) == 0) return "user";
    if (len == 13 && memcmp(line, "### assistant", 13) == 0) return "assistant";
    return NULL;
}

/* text[a, b) without leading and trailing blank lines (malloc'd). */
static char *trim_blank_lines(const char *a, const char *b) {
    const char *s = a;
    for (const char *p = a; p < b; p++) { /* skip whole blank lines at the start */
        if (*p == '\n') s = p + 1;
        else if (*p != ' ' && *p != '\t' && *p != '\r') break;
    }
    const char *e = b;
    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
    char *out = xmalloc((size_t)(e - s) + 1);
    if (!out) return NULL;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = 0;
    return out;
}

static int add_turn(struct prompt_turn **turns, int *n, const char *role, const char *a,
                    const char *b, const char *path, int line) {
    char *content = trim_blank_lines(a, b);
    if (!content) return -1;
    if (!*content) {
        free(content);
        return err_set("%s:%d: the \"### %s\" section is empty", path, line, role);
    }
    struct prompt_turn *t = xrealloc(*turns, sizeof *t * (size_t)(*n + 1));
    if (!t) {
        free(content);
        return -1;
    }
    *turns = t;
    t[*n] = (struct prompt_turn){role, content};
    (*n)++;
    return 0;
}

static int parse_shots(const char *path, const char *text, struct prompt_turn **turns, int *n) {
    *turns = NULL;
    *n = 0;
    const char *role = NULL, *body = NULL;
    int role_line = 0, line = 1;
    for (const char *p = text; *p; line++) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        const char *next_role = header_role(p, len);
        if (next_role) {
            if (role && add_turn(turns, n, role, body, p, path, role_line) != 0) return -1;
            const char *want = *n % 2 == 0 ? "user" : "assistant";
            if (strcmp(next_role, want) != 0)
                return err_set("%s:%d: expected a \"### %s\" section here (turns alternate, "
                               "starting with user), got \"### %s\"",
                               path, line, want, next_role);
            role = next_role;
            role_line = line;
            body = eol ? eol + 1 : p + len;
        }
        p = eol ? eol + 1 : p + len;
    }
    if (role && add_turn(turns, n, role, body, text + strlen(text), path, role_line) != 0)
        return -1;
    if (*n % 2 != 0)
        return err_set("%s: the last worked example has no \"### assistant\" answer", path);
    return 0;
}

/* ---- the set ---- */

static void free_turns(struct prompt_turn *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].content);
    free(t);
}

void prompt_set_free(struct prompt_set *ps) {
    free(ps->dir);
    for (int i = 0; i < PROMPT_N; i++) free(ps->text[i]);
    free_turns(ps->explain_shots, ps->n_explain_shots);
    free_turns(ps->simulate_shots, ps->n_simulate_shots);
    memset(ps, 0, sizeof *ps);
}

static void hash_set(struct prompt_set *ps) {
    struct sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; i < PROMPT_N; i++) {
        char head[96];
        size_t n = strlen(ps->text[i]);
        int h = snprintf(head, sizeof head, "%s\n%zu\n", specs[i].file, n);
        sha256_update(&c, head, (size_t)h);
        sha256_update(&c, ps->text[i], n);
    }
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_final(&c, d);
    sha256_to_hex(d, ps->sha256);
}

static int load_one(struct prompt_set *ps, const char *dir, int i) {
    size_t plen = strlen(dir) + strlen(specs[i].file) + 2;
    char *path = xmalloc(plen);
    if (!path) return -1;
    snprintf(path, plen, "%s/%s", dir, specs[i].file);
    int rc = 0;
    size_t n;
    ps->text[i] = read_file_all(path, PROMPT_MAX_BYTES, &n);
    if (!ps->text[i]) rc = err_prefix("prompt template");
    else if (strlen(ps->text[i]) != n) rc = err_set("%s: holds a NUL byte", path);
    else if (check_template(path, &specs[i], ps->text[i]) != 0) rc = -1;
    else if (i == PROMPT_EXPLAIN_FEWSHOT)
        rc = parse_shots(path, ps->text[i], &ps->explain_shots, &ps->n_explain_shots);
    else if (i == PROMPT_SIMULATE_FEWSHOT)
        rc = parse_shots(path, ps->text[i], &ps->simulate_shots, &ps->n_simulate_shots);
    free(path);
    return rc;
}

/* The default directory, "prompts", when the working directory has none: the
 * copy beside the binary (<bin>/../prompts, a build tree) or the installed one
 * (<bin>/../share/autointerp/prompts, `make install`). Malloc'd; NULL if
 * neither exists. */
static char *installed_dir(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    const char *tails[] = {"/../" PROMPT_DEFAULT_DIR, "/../share/autointerp/" PROMPT_DEFAULT_DIR};
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        char path[PATH_MAX + 64], real[PATH_MAX];
        snprintf(path, sizeof path, "%s%s", exe, tails[i]);
        if (dir_exists(path) && realpath(path, real)) return xstrdup(real);
    }
    return NULL;
}

int prompt_set_load(struct prompt_set *ps, const char *dir) {
    memset(ps, 0, sizeof *ps);
    if (!dir || !*dir) return err_set("prompts: no template directory given");
    if (strcmp(dir, PROMPT_DEFAULT_DIR) == 0 && !dir_exists(dir)) {
        ps->dir = installed_dir();
        if (!ps->dir)
            return err_set("prompt templates: no directory \"" PROMPT_DEFAULT_DIR
                           "\" in the working directory, beside the binary (../" PROMPT_DEFAULT_DIR
                           ") or installed (../share/autointerp/" PROMPT_DEFAULT_DIR
                           "); set interp.prompts");
    }
    if (!ps->dir) ps->dir = xstrdup(dir);
    if (!ps->dir) return -1;
    dir = ps->dir;
    for (int i = 0; i < PROMPT_N; i++) {
        if (load_one(ps, dir, i) != 0) {
            prompt_set_free(ps);
            return -1;
        }
    }
    hash_set(ps);
    return 0;
}

char *prompt_render(const struct prompt_set *ps, enum prompt_id id, const struct prompt_var *vars,
                    int n_vars, size_t *offsets) {
    const char *t = ps->text[id];
    for (int i = 0; offsets && i < n_vars; i++) offsets[i] = (size_t)-1;
    size_t cap = strlen(t) + 1;
    for (int i = 0; i < n_vars; i++) cap += strlen(vars[i].value);
    /* a var used more than once: grow as needed */
    char *out = xmalloc(cap);
    size_t n = 0;
    if (!out) return NULL;
    for (const char *p = t; *p;) {
        char name[NAME_MAX_LEN];
        size_t len = p[0] == '{' && p[1] == '{' ? placeholder_at(p, name) : 0;
        if (len == 0) {
            out[n++] = *p++;
            continue;
        }
        int k = 0;
        while (k < n_vars && strcmp(vars[k].name, name) != 0) k++;
        if (k == n_vars) {
            free(out);
            err_set("%s/%s: placeholder {{%s}} has no value", ps->dir, specs[id].file, name);
            return NULL;
        }
        size_t vlen = strlen(vars[k].value);
        if (n + vlen + strlen(p) + 1 > cap) {
            cap = (n + vlen + strlen(p) + 1) * 2;
            char *grown = xrealloc(out, cap);
            if (!grown) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        if (offsets && offsets[k] == (size_t)-1) offsets[k] = n;
        memcpy(out + n, vars[k].value, vlen);
        n += vlen;
        p += len;
    }
    out[n] = 0;
    return out;
}
