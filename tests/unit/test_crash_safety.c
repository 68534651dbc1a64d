/* test_crash_safety.c: SIGKILL at random points, then a rerun that finishes with
 * exactly the results of a run that was never interrupted.
 *
 * Each long stage (train, extract, explain, simulate) and the whole `run` is
 * killed several times at seeded random moments (AUTOINTERP_CRASH_SEED to try
 * others; the seed is printed), each relaunch resuming what the last one left.
 * After every kill, every output file that exists must load cleanly with the
 * reader the next stage uses (token datasets, SAE files and checkpoints,
 * examples files, JSONL with at most a torn last line and never a feature
 * twice, the response cache, JSON, and whole report pages), and every stage
 * stamp must list outputs that exist. A final uninterrupted `run` must then
 * reproduce the reference run: SAE and examples files dataset by dataset, bit
 * for bit; explanation, simulation and score lines feature by feature (timing,
 * attempt and cache fields aside); sweep.json and the report's summary.json.
 *
 * The model is stories260K (../shared; skipped without it) with two tiny SAEs
 * and 8 features each. Explain and simulate run twice: with the builtin
 * provider, and against the simulator-aware test server with 40 ms of latency
 * and 2-4 requests in flight, so that kills land in the middle of LLM batches;
 * there the server's log also shows that no request was paid twice beyond the
 * few in flight at each kill.
 *
 * Every run of a test happens in its own directory with the same config text
 * (results_dir "results", absolute input paths), so a trial can start from a
 * copy of the reference run with the later stages removed.
 */
#include "../servers/testserver.h"
#include "testutil.h"
#include "../fixtures/soak/soak.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "extract/examples.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "llm/cache.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "tok/dataset.h"

#define EXP "results/crash"
#define N_KILLS 4
#define LATENCY_MS "40"
#define SIM_CONCURRENCY 4

static const char *const stage_names[] = {"tokenize", "train", "extract", "explain",
                                          "simulate", "score", "report"};
static const char *const stage_dirs[] = {"data",        "saes",   "examples", "explanations",
                                         "simulations", "scores", "report"};
#define N_STAGES 7

/* ---- shared state: the server and the two reference runs ---- */

struct ref {
    char *dir;
    bool ready;
    double stage_s[N_STAGES]; /* from the reference manifest */
    double total_s;
    double overhead_s; /* a run that skips every stage */
};

static struct {
    bool have_model;
    char *root, *prompts;
    struct soak_stories st;
    struct test_server srv;
    struct ref ref[2]; /* builtin, server */
    unsigned long long rng;
    int trial;
} G;

static double wall(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static double uniform(void) {
    G.rng ^= G.rng << 13;
    G.rng ^= G.rng >> 7;
    G.rng ^= G.rng << 17;
    return (double)(G.rng >> 11) / 9007199254740992.0;
}

static int group_setup(void **state) {
    (void)state;
    h5_init();
    const char *seed = getenv("AUTOINTERP_CRASH_SEED");
    G.rng = seed ? strtoull(seed, NULL, 10) : 20261125ull;
    if (!G.rng) G.rng = 1;
    printf("crash seed %llu (AUTOINTERP_CRASH_SEED)\n", G.rng);
    G.have_model = soak_stories_find(&G.st) == 0;
    if (!G.have_model) return 0;
    G.root = test_tmpdir("crash");
    G.prompts = soak_abs("prompts");
    const char *args[] = {"--latency-ms", LATENCY_MS, "--hot", "e", NULL};
    if (soak_server_start(&G.srv, G.root, INTERP_SERVER, args) != 0) return -1;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    test_server_stop(&G.srv);
    for (int v = 0; v < 2; v++)
        free(G.ref[v].dir);
    if (G.root) test_rmtree(G.root);
    free(G.root);
    free(G.prompts);
    soak_stories_free(&G.st);
    return 0;
}

/* ---- configs and runs ---- */

static void write_config(const char *dir, bool server) {
    char ep_e[512] = "\"provider\": \"builtin\"",
         ep_s[512] = "\"provider\": \"builtin\", \"mode\": \"builtin\"";
    if (server) {
        snprintf(ep_e, sizeof ep_e,
                 "\"provider\": \"openai\", \"base_url\": \"%s\", \"model\": \"crash-explainer\","
                 " \"concurrency\": 2, \"timeout_ms\": 10000, \"max_retries\": 2",
                 G.srv.base_url);
        snprintf(
            ep_s, sizeof ep_s,
            "\"provider\": \"openai\", \"base_url\": \"%s\", \"model\": \"crash-simulator\","
            " \"concurrency\": %d, \"timeout_ms\": 10000, \"max_retries\": 2, \"mode\": \"json\"",
            G.srv.base_url, SIM_CONCURRENCY);
    }
    char text[4096];
    snprintf(text, sizeof text,
             "{\"experiment\": \"crash\", \"results_dir\": \"results\", \"seed\": 3,\n"
             " \"data\": {\"tokenizer\": \"%s\", \"train_text\": [\"%s\"], \"context\": 32},\n"
             " \"model\": {\"path\": \"%s\"},\n"
             " \"sae\": {\"layers\": [2], \"types\": [\"local\", \"e2e\"], \"ratio\": 4,\n"
             "   \"local\": {\"lambdas\": [2]}, \"e2e\": {\"lambdas\": [0.5]},\n"
             "   \"train_tokens\": 1536, \"eval_tokens\": 1024, \"batch\": 4, "
             "\"checkpoint_every\": 2},\n"
             " \"extract\": {\"n_features\": 8, \"top_k\": 6, \"n_random\": 2, \"window\": 16,"
             " \"offset\": 8, \"tokens\": 8192},\n"
             " \"interp\": {\"n_explain\": 3, \"n_score_top\": 3, \"n_score_random\": 2,"
             " \"prompts\": \"%s\"},\n"
             " \"explainer\": {%s},\n"
             " \"simulator\": {%s},\n"
             " \"report\": {\"resamples\": 1000}}\n",
             G.st.tokenizer, G.st.text, G.st.model, G.prompts, ep_e, ep_s);
    char *p = path_join(dir, "crash.json");
    write_file(p, text, strlen(text));
    free(p);
}

/* Start `autointerp run` in dir (stdout and stderr appended to dir/runs.log). */
static pid_t launch(const char *dir, const char *until) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        int fd = open("runs.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *bin = autointerp_bin();
        if (until)
            execl(bin, bin, "run", "--threads", "1", "--until", until, "crash.json", (char *)NULL);
        else
            execl(bin, bin, "run", "--threads", "1", "crash.json", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void fail_with_log(const char *dir, const char *what) {
    char *p = path_join(dir, "runs.log");
    size_t n = 0;
    char *log = read_file_all(p, 0, &n);
    free(p);
    fail_msg("%s; the end of %s/runs.log:\n%s", what, dir,
             log ? log + (n > 1500 ? n - 1500 : 0) : "");
}

/* Run to the end; the exit status must be 0. */
static void run_to_end(const char *dir, const char *until) {
    pid_t pid = launch(dir, until);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_with_log(dir, "autointerp run failed");
}

/* Launch, and SIGKILL after delay_s unless it finished first. 1 when the kill
 * landed, 0 when the run had already finished (successfully). */
static int kill_after(const char *dir, const char *until, double delay_s) {
    pid_t pid = launch(dir, until);
    double t0 = wall();
    int st;
    while (wall() - t0 < delay_s) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fail_with_log(dir, "an unkilled run failed");
            return 0;
        }
        ts_sleep_ms(1);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) ? 1 : 0;
}

/* ---- HDF5 datasets, bit for bit ---- */

struct h5set {
    int n;
    char *name[128];
    unsigned char *data[128];
    size_t size[128];
};

static herr_t h5set_visit(hid_t root, const char *name, const H5O_info_t *info, void *ud) {
    struct h5set *s = ud;
    if (info->type != H5O_TYPE_DATASET || s->n >= 128) return 0;
    hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    size_t bytes = (size_t)np * H5Tget_size(mt);
    unsigned char *buf = malloc(bytes ? bytes : 1);
    herr_t rc =
        H5Tis_variable_str(ft) > 0 ? -1 : H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Tclose(mt);
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(d);
    if (rc < 0) {
        free(buf);
        return -1;
    }
    s->name[s->n] = strdup(name);
    s->data[s->n] = buf;
    s->size[s->n++] = bytes;
    return 0;
}

static void h5set_free(struct h5set *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->name[i]);
        free(s->data[i]);
    }
    s->n = 0;
}

/* Every dataset of the file read whole; -1 when any cannot be. */
static int h5set_load(const char *path, struct h5set *s) {
    memset(s, 0, sizeof *s);
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1;
    herr_t rc = H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, h5set_visit, s);
    h5_close(f);
    if (rc < 0) h5set_free(s);
    return rc < 0 ? -1 : 0;
}

static void assert_same_datasets(const char *ref_path, const char *path) {
    struct h5set a, b;
    if (h5set_load(ref_path, &a) != 0) fail_msg("%s: unreadable", ref_path);
    if (h5set_load(path, &b) != 0) fail_msg("%s: unreadable", path);
    if (a.n != b.n) fail_msg("%s: %d datasets, the reference has %d", path, b.n, a.n);
    assert_true(a.n > 0);
    for (int i = 0; i < a.n; i++) {
        if (strcmp(a.name[i], b.name[i]) != 0)
            fail_msg("%s: dataset %s where the reference has %s", path, b.name[i], a.name[i]);
        if (a.size[i] != b.size[i] || memcmp(a.data[i], b.data[i], a.size[i]) != 0)
            fail_msg("%s: dataset /%s differs from the uninterrupted run", path, a.name[i]);
    }
    h5set_free(&a);
    h5set_free(&b);
}

/* ---- JSON, volatile fields aside ---- */

/* Fields that say how a result was obtained, not what it is: times, attempts,
 * cache use (summary.json's "timing" too). A score line's input_sha256 leaves
 * these out, so it must match between runs. */
static bool is_volatile(const char *key) {
    const char *v[] = {"latency_ms", "total_ms", "attempts", "from_cache",
                       "cache_hits", "seconds",  "timing"};
    for (int i = 0; key && i < 7; i++)
        if (strcmp(key, v[i]) == 0) return true;
    return false;
}

/* 0 when equal; else the path of the first difference in where. */
static int json_diff(const cJSON *a, const cJSON *b, char *where, size_t cap) {
    if ((a->type & 0xff) != (b->type & 0xff)) return -1;
    if (cJSON_IsNumber(a)) return a->valuedouble == b->valuedouble ? 0 : -1;
    if (cJSON_IsString(a)) return strcmp(a->valuestring, b->valuestring) == 0 ? 0 : -1;
    if (!cJSON_IsArray(a) && !cJSON_IsObject(a)) return 0;
    size_t len = strlen(where);
    const cJSON *x;
    int na = 0, nb = 0;
    cJSON_ArrayForEach(x, a) if (!is_volatile(x->string)) na++;
    cJSON_ArrayForEach(x, b) if (!is_volatile(x->string)) nb++;
    if (na != nb) return -1;
    int i = 0;
    cJSON_ArrayForEach(x, a) {
        if (is_volatile(x->string)) continue;
        const cJSON *y = cJSON_IsObject(a) ? cJSON_GetObjectItemCaseSensitive(b, x->string)
                                           : cJSON_GetArrayItem(b, i);
        if (x->string)
            snprintf(where + len, cap - len, ".%s", x->string);
        else
            snprintf(where + len, cap - len, "[%d]", i);
        i++;
        if (!y || json_diff(x, y, where, cap) != 0) return -1;
    }
    where[len] = 0;
    return 0;
}

static cJSON *load_json(const char *path) {
    char *text = read_file_all(path, 0, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static void assert_same_json(const char *ref_path, const char *path) {
    cJSON *a = load_json(ref_path), *b = load_json(path);
    if (!a || !b) fail_msg("%s or %s: missing or not JSON", ref_path, path);
    char where[512] = "";
    if (json_diff(a, b, where, sizeof where) != 0)
        fail_msg("%s differs from the uninterrupted run at %s", path, where[0] ? where : "(top)");
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* The line of each feature (the key "feature"); fails on a feature twice. */
static cJSON *lines_by_feature(const char *path, int *n_torn) {
    cJSON *lines = soak_lines(path, n_torn);
    if (!lines) fail_msg("%s: %s", path, err_msg());
    cJSON *by = cJSON_CreateObject();
    const cJSON *o;
    cJSON_ArrayForEach(o, lines) {
        char key[32];
        snprintf(key, sizeof key, "%d", (int)soak_num(o, "feature"));
        if (cJSON_GetObjectItemCaseSensitive(by, key))
            fail_msg("%s: feature %s has two lines (work done twice)", path, key);
        cJSON_AddItemToObject(by, key, cJSON_Duplicate(o, 1));
    }
    cJSON_Delete(lines);
    return by;
}

static void assert_same_lines(const char *ref_path, const char *path) {
    int torn = 0;
    cJSON *a = lines_by_feature(ref_path, NULL), *b = lines_by_feature(path, &torn);
    assert_int_equal(torn, 0);
    assert_true(cJSON_GetArraySize(a) > 0);
    char where[512] = "";
    if (json_diff(a, b, where, sizeof where) != 0)
        fail_msg("%s differs from the uninterrupted run at feature %s", path, where);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* ---- every file that exists loads ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A text file ends with `tail` (trailing whitespace aside). */
static void assert_text_whole(const char *path, const char *tail) {
    size_t n = 0;
    char *t = read_file_all(path, 0, &n);
    assert_non_null(t);
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == ' '))
        t[--n] = 0;
    if (n == 0 || !ends_with(t, tail)) fail_msg("%s: cut off (does not end with %s)", path, tail);
    free(t);
}

static void check_file(const char *path, const char *sub, int *n_checked) {
    const char *base = strrchr(path, '/') + 1;
    if (strstr(base, ".tmp.")) return; /* a temporary sibling: no reader opens it */
    (*n_checked)++;
    if (strcmp(sub, "llm-cache") == 0) {
        char key[65];
        snprintf(key, sizeof key, "%.64s", base);
        char *dir = strndup(path, strlen(path) - strlen(base) - 4); /* .../llm-cache */
        char *body = NULL;
        size_t n;
        if (llm_cache_get(dir, key, &body, &n) != 1)
            fail_msg("%s: cache entry unusable: %s", path, err_msg());
        free(body);
        free(dir);
    } else if (strcmp(sub, "data") == 0) {
        struct token_dataset d;
        if (token_dataset_open(&d, path) != 0) fail_msg("%s", err_msg());
        token_dataset_close(&d);
    } else if (strcmp(sub, "saes") == 0 && ends_with(base, ".ckpt.h5")) {
        struct h5set s;
        if (h5set_load(path, &s) != 0) fail_msg("%s: checkpoint unreadable", path);
        h5set_free(&s);
    } else if (strcmp(sub, "saes") == 0 && ends_with(base, ".h5")) {
        struct sae s;
        struct sae_meta m;
        if (sae_file_read(path, &s, &m) != 0) fail_msg("%s", err_msg());
        sae_free(&s);
        sae_meta_free(&m);
    } else if (strcmp(sub, "examples") == 0) {
        struct examples ex;
        if (examples_load(path, &ex) != 0) fail_msg("%s", err_msg());
        examples_free(&ex);
    } else if (ends_with(base, ".jsonl")) {
        cJSON_Delete(lines_by_feature(path, NULL)); /* a torn last line at most */
    } else if (ends_with(base, ".json")) {
        cJSON *j = load_json(path);
        if (!j) fail_msg("%s: not whole JSON", path);
        cJSON_Delete(j);
    } else if (ends_with(base, ".html")) {
        assert_text_whole(path, "</html>");
    } else if (ends_with(base, ".svg")) {
        assert_text_whole(path, "</svg>");
    } else if (ends_with(base, ".csv") || ends_with(base, ".md")) {
        size_t n = 0;
        char *t = read_file_all(path, 0, &n);
        if (!t || n == 0 || t[n - 1] != '\n') fail_msg("%s: empty or cut off", path);
        free(t);
    } else {
        print_message("note: %s has no check\n", path);
    }
}

static void walk(const char *dir, const char *sub, int *n_checked) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            walk(p, sub ? sub : e->d_name, n_checked);
        else if (stat(p, &st) == 0)
            check_file(p, sub ? sub : "", n_checked);
        free(p);
    }
    closedir(d);
}

/* Stamps list outputs that exist (a stage is stamped only when it finished). */
static void check_stamps(const char *exp_dir, const char *dir) {
    for (int s = 0; s < N_STAGES; s++) {
        char rel[128];
        snprintf(rel, sizeof rel, "stages/%s.json", stage_names[s]);
        char *p = path_join(exp_dir, rel);
        cJSON *j = load_json(p);
        free(p);
        if (!j) continue;
        const cJSON *o;
        cJSON_ArrayForEach(o, cJSON_GetObjectItem(j, "outputs")) {
            char *full = path_join(dir, o->valuestring);
            if (!file_exists(full))
                fail_msg("stage %s is stamped but its output %s is missing", stage_names[s],
                         o->valuestring);
            free(full);
        }
        cJSON_Delete(j);
    }
}

/* After a kill: everything there is must read as whole. */
static int check_integrity(const char *dir) {
    char *exp = path_join(dir, EXP);
    int n = 0;
    walk(exp, NULL, &n);
    check_stamps(exp, dir);
    free(exp);
    return n;
}

/* ---- comparing a finished trial with the reference ---- */

static void compare_kind(const char *ref_exp, const char *exp, const char *sub, const char *ext) {
    char *rdir = path_join(ref_exp, sub);
    DIR *d = opendir(rdir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ext) || strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".ckpt."))
            continue;
        char rel[600];
        snprintf(rel, sizeof rel, "%s/%s", sub, e->d_name);
        char *a = path_join(ref_exp, rel), *b = path_join(exp, rel);
        if (!file_exists(b)) fail_msg("%s: missing after the rerun", b);
        if (strcmp(ext, ".h5") == 0)
            assert_same_datasets(a, b);
        else if (strcmp(ext, ".jsonl") == 0)
            assert_same_lines(a, b);
        else
            assert_same_json(a, b);
        free(a);
        free(b);
        n++;
    }
    closedir(d);
    free(rdir);
    if (n == 0) fail_msg("the reference run has no %s/*%s", sub, ext);
}

static void compare_with_ref(const struct ref *r, const char *dir) {
    char *a = path_join(r->dir, EXP), *b = path_join(dir, EXP);
    compare_kind(a, b, "saes", ".h5");
    compare_kind(a, b, "saes", ".json");
    compare_kind(a, b, "examples", ".h5");
    compare_kind(a, b, "explanations", ".jsonl");
    compare_kind(a, b, "simulations", ".jsonl");
    compare_kind(a, b, "scores", ".jsonl");
    compare_kind(a, b, "report", ".json");
    /* nothing left behind: no temporary file, no checkpoint of a finished SAE */
    char cmd[1200], *out = NULL;
    snprintf(cmd, sizeof cmd, "find %s -name '*.tmp.*' -o -name '*.ckpt.h5' | head -3", b);
    assert_int_equal(run_capture(cmd, &out), 0);
    if (out && *out) fail_msg("left behind after the rerun:\n%s", out);
    free(out);
    free(a);
    free(b);
}

/* ---- reference runs and trials ---- */

static double manifest_stage_seconds(cJSON *m, const char *stage) {
    const cJSON *s;
    cJSON_ArrayForEach(s,
                       cJSON_GetObjectItem(m, "stages")) if (strcmp(soak_str(s, "name"), stage) ==
                                                             0) return soak_num(s, "seconds");
    return 0;
}

/* Receipts in the server log so far. */
static int log_mark(void) {
    return test_server_count(&G.srv, NULL, NULL);
}

/* Receipts since mark minus distinct bodies since mark. */
static int resent_since(int mark) {
    cJSON *log = test_server_log(&G.srv);
    int n = cJSON_GetArraySize(log), extra = 0, m = 0;
    const char **sha = calloc((size_t)n + 1, sizeof *sha);
    const cJSON *e;
    cJSON_ArrayForEach(e, log) sha[m++] = soak_str(e, "body_sha256");
    for (int i = mark; i < n; i++)
        for (int k = mark; k < i; k++)
            if (strcmp(sha[k], sha[i]) == 0) {
                extra++;
                break;
            }
    free(sha);
    cJSON_Delete(log);
    return extra;
}

static struct ref *reference(bool server) {
    struct ref *r = &G.ref[server];
    if (r->ready) return r;
    char name[32];
    snprintf(name, sizeof name, "ref-%s", server ? "server" : "builtin");
    r->dir = path_join(G.root, name);
    assert_int_equal(mkdir_p(r->dir), 0);
    write_config(r->dir, server);
    int mark = server ? log_mark() : 0;
    run_to_end(r->dir, NULL);
    /* an uninterrupted run sends every request once (the trials' bound below
     * counts on it) */
    if (server) assert_int_equal(resent_since(mark), 0);
    char *mp = path_join(r->dir, EXP "/manifest.json");
    cJSON *m = load_json(mp);
    free(mp);
    assert_non_null(m);
    assert_string_equal(soak_str(m, "status"), "ok");
    for (int s = 0; s < N_STAGES; s++) {
        r->stage_s[s] = manifest_stage_seconds(m, stage_names[s]);
        r->total_s += r->stage_s[s];
    }
    cJSON_Delete(m);
    double t0 = wall();
    run_to_end(r->dir, NULL); /* everything is skipped: what starting up costs */
    r->overhead_s = wall() - t0;
    r->ready = true;
    print_message("reference (%s): %.2f s of stages, %.2f s to start and skip them all\n",
                  server ? "server" : "builtin", r->total_s, r->overhead_s);
    return r;
}

static int stage_index(const char *stage) {
    for (int s = 0; s < N_STAGES; s++)
        if (strcmp(stage_names[s], stage) == 0) return s;
    return -1;
}

/* A trial directory holding the reference run up to (not including) stage;
 * NULL stage = an empty one. */
static char *trial_dir(const struct ref *r, bool server, const char *stage) {
    char name[64];
    snprintf(name, sizeof name, "trial-%d", ++G.trial);
    char *dir = path_join(G.root, name);
    assert_int_equal(mkdir_p(dir), 0);
    write_config(dir, server);
    if (!stage) return dir;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp -a %s/results %s/ && rm -rf %s/" EXP "/llm-cache", r->dir, dir,
             dir);
    assert_int_equal(system(cmd), 0);
    for (int s = stage_index(stage); s < N_STAGES; s++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s/" EXP "/%s %s/" EXP "/stages/%s.json", dir,
                 stage_dirs[s], dir, stage_names[s]);
        assert_int_equal(system(cmd), 0);
    }
    return dir;
}

/* Kill `run --until stage` (or the whole run when stage is NULL) N_KILLS
 * times, checking the files after each kill, then finish and compare. */
static void kill_and_resume(bool server, const char *stage) {
    if (!G.have_model) skip_because("../shared/models/stories260K or its text is absent");
    struct ref *r = reference(server);
    double span = r->overhead_s + (stage ? r->stage_s[stage_index(stage)] : r->total_s);
    int mark = 0, landed = 0, checked = 0;
    char *dir = NULL;
    /* the first kill must land: when this machine ran faster than the
     * reference did, start again with earlier kills */
    for (int attempt = 0; attempt < 4 && !landed; attempt++, span *= 0.5) {
        if (dir) {
            test_rmtree(dir);
            free(dir);
        }
        dir = trial_dir(r, server, stage);
        mark = server ? log_mark() : 0;
        for (int k = 0; k < N_KILLS; k++) {
            double delay = uniform() * span;
            int hit = kill_after(dir, stage, delay);
            landed += hit;
            checked += check_integrity(dir);
            print_message("%s (%s): kill %d at %.3f s of ~%.2f: %s\n", stage ? stage : "run",
                          server ? "server" : "builtin", k + 1, delay, span,
                          hit ? "landed" : "the run had finished");
            if (!hit) break;
        }
    }
    if (landed == 0) fail_msg("no kill landed while %s was running", stage ? stage : "the run");
    run_to_end(dir, NULL);
    checked += check_integrity(dir);
    compare_with_ref(r, dir);
    if (server) {
        /* only requests in flight at a kill may be sent again */
        int resent = resent_since(mark);
        print_message("%d request(s) sent again after %d kill(s)\n", resent, landed);
        assert_true(resent <= landed * SIM_CONCURRENCY);
    }
    print_message("%d files checked after kills\n", checked);
    test_rmtree(dir);
    free(dir);
}

static void test_train_killed(void **state) {
    (void)state;
    kill_and_resume(false, "train");
}
static void test_extract_killed(void **state) {
    (void)state;
    kill_and_resume(false, "extract");
}
static void test_explain_killed_builtin(void **state) {
    (void)state;
    kill_and_resume(false, "explain");
}
static void test_simulate_killed_builtin(void **state) {
    (void)state;
    kill_and_resume(false, "simulate");
}
static void test_explain_killed_server(void **state) {
    (void)state;
    kill_and_resume(true, "explain");
}
static void test_simulate_killed_server(void **state) {
    (void)state;
    kill_and_resume(true, "simulate");
}
static void test_run_killed_builtin(void **state) {
    (void)state;
    kill_and_resume(false, NULL);
}
static void test_run_killed_server(void **state) {
    (void)state;
    kill_and_resume(true, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_killed),
        cmocka_unit_test(test_extract_killed),
        cmocka_unit_test(test_explain_killed_builtin),
        cmocka_unit_test(test_simulate_killed_builtin),
        cmocka_unit_test(test_explain_killed_server),
        cmocka_unit_test(test_simulate_killed_server),
        cmocka_unit_test(test_run_killed_builtin),
        cmocka_unit_test(test_run_killed_server),
    };
    return cmocka_run_group_tests_name("crash_safety", tests, group_setup, group_teardown);
}
