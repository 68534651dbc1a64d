/* test_config.c: strict validation names the key; defaults come from the schema;
 * the hash ignores key order; every ready config in configs/ validates. */
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/error.h"

#define BASE "\"experiment\": \"t\", \"data\": {\"tokenizer\": \"tok\", \"train_text\": [\"a.txt\"]}"

static void expect_error(const char *json, const char *needle) {
    struct config cfg;
    int rc = config_parse(&cfg, json, "cfg.json");
    if (rc == 0) {
        config_free(&cfg);
        fail_msg("accepted: %s", json);
    }
    if (!strstr(err_msg(), needle)) fail_msg("error '%s' lacks '%s'", err_msg(), needle);
    if (!strstr(err_msg(), "cfg.json")) fail_msg("error '%s' lacks the file name", err_msg());
}

static void test_errors_name_the_key(void **state) {
    (void)state;
    expect_error("{" BASE ", \"sae\": {\"ratio\": -3}}",
                 "sae.ratio: must be an integer from 1 to 1024, got -3");
    expect_error("{" BASE ", \"sae\": {\"ratio\": 2.5}}", "sae.ratio: must be an integer");
    expect_error("{" BASE ", \"sae\": {\"ratoi\": 3}}", "sae.ratoi: unknown key (did you mean 'sae.ratio'?)");
    expect_error("{" BASE ", \"sae\": {\"local\": {\"lambdas\": [1, \"x\"]}}}",
                 "sae.local.lambdas[1]: must be a number");
    expect_error("{" BASE ", \"sae\": {\"types\": [\"local\", \"local\"]}}", "sae.types[1]: 'local' is listed twice");
    expect_error("{" BASE ", \"sae\": {\"types\": [\"global\"]}}", "sae.types[0]: must be one of local|e2e|e2e_ds");
    expect_error("{" BASE ", \"sae\": 3}", "sae: must be an object");
    expect_error("{" BASE ", \"bogus\": 1}", "bogus: unknown key");
    expect_error("{" BASE ", \"seed\": 1, \"seed\": 2}", "seed: key appears twice");
    expect_error("{" BASE ", \"explainer\": {\"headers\": {\"X-A\": 1}}}", "explainer.headers.X-A: must be a string");
    expect_error("{" BASE ", \"report\": {\"pairs\": [[\"a\"]]}}", "report.pairs[0]: must be a pair");
    expect_error("{\"experiment\": \"t\", \"data\": {\"train_tokens\": \"x.h5\", \"context\": true}}",
                 "data.context: must be an integer, got a boolean");
    expect_error("[1,2]", "must be a JSON object");
    expect_error("{\n\"experiment\": \"t\",\n  \"seed\": 1,,\n}", "invalid JSON at line 3");
}

static void test_relations_are_checked(void **state) {
    (void)state;
    expect_error("{\"experiment\": \"t\"}", "data.train_text");
    expect_error("{\"experiment\": \"../x\", \"data\": {\"train_tokens\": \"x.h5\"}}", "experiment: must be");
    expect_error("{" BASE ", \"extract\": {\"window\": 16, \"offset\": 16}}", "extract.offset");
    expect_error("{" BASE ", \"interp\": {\"n_explain\": 25, \"n_score_top\": 10}}", "exceeds extract.top_k");
    expect_error("{" BASE ", \"simulator\": {\"provider\": \"openai\", \"mode\": \"builtin\"}}", "simulator.mode");
    expect_error("{" BASE ", \"explainer\": {\"provider\": \"openai\", \"base_url\": \"ftp://x\"}}",
                 "explainer.base_url: must start with http");
    expect_error("{" BASE ", \"model\": {\"train\": {\"n_embd\": 100, \"n_head\": 3}}}",
                 "model.train.n_head: 3 does not divide");
    expect_error("{" BASE ", \"sae\": {\"types\": [\"e2e\"], \"e2e\": {\"lambdas\": []}}}", "sae.e2e.lambdas: empty");
}

static void test_defaults_fill_every_key(void **state) {
    (void)state;
    struct config cfg;
    assert_int_equal(config_parse(&cfg, "{" BASE ", \"sae\": {\"ratio\": 60}}", "cfg.json"), 0);
    assert_int_equal(cfg_int(&cfg, "sae.ratio"), 60);
    assert_int_equal(cfg_int(&cfg, "extract.n_features"), 200);
    assert_int_equal(cfg_int(&cfg, "report.resamples"), 100000);
    assert_true(cfg_num(&cfg, "sae.e2e_ds.kl_coeff") == 0.5);
    assert_string_equal(cfg_str(&cfg, "explainer.provider"), "builtin");
    assert_int_equal(cfg_list_len(&cfg, "sae.types"), 3);
    assert_true(cfg_bool(&cfg, "data.prepend_bos"));
    int n;
    const struct cfg_entry *s = config_schema(&n);
    for (int i = 0; i < n; i++) {
        /* every default parses and passes its own validation */
        cJSON *d = cJSON_Parse(s[i].def);
        assert_non_null(d);
        cJSON_Delete(d);
    }
    config_free(&cfg);
}

static void test_hash_ignores_key_order(void **state) {
    (void)state;
    struct config a, b, c;
    assert_int_equal(config_parse(&a, "{" BASE ", \"seed\": 3, \"sae\": {\"ratio\": 8, \"lr\": 0.001}}", "a"), 0);
    assert_int_equal(config_parse(&b, "{\"sae\": {\"lr\": 0.001, \"ratio\": 8}, \"seed\": 3, " BASE "}", "b"), 0);
    assert_int_equal(config_parse(&c, "{" BASE ", \"seed\": 4, \"sae\": {\"ratio\": 8, \"lr\": 0.001}}", "c"), 0);
    char ha[65], hb[65], hc[65];
    assert_int_equal(config_hash(&a, ha), 0);
    assert_int_equal(config_hash(&b, hb), 0);
    assert_int_equal(config_hash(&c, hc), 0);
    assert_string_equal(ha, hb);
    assert_string_not_equal(ha, hc);
    config_free(&a);
    config_free(&b);
    config_free(&c);
}

static int validate_dir(const char *dirname) {
    DIR *d = opendir(dirname);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        char *p = path_join(dirname, e->d_name);
        struct config cfg;
        if (config_load(&cfg, p) != 0) fail_msg("%s", err_msg());
        config_free(&cfg);
        free(p);
        n++;
    }
    closedir(d);
    return n;
}

static void test_ready_configs_validate(void **state) {
    (void)state;
    int n = validate_dir("configs") + validate_dir("configs/examples");
    if (n == 0) skip_because("configs/ has no .json files");
    assert_true(n >= 6); /* demo, stories260k, gpt2-small-layer6 and the three endpoint examples */
}

static void test_cli_config_check(void **state) {
    (void)state;
    char *dir = test_tmpdir("cfgcli");
    char *good = path_join(dir, "good.json"), *bad = path_join(dir, "bad.json");
    const char *g = "{" BASE "}";
    const char *b = "{" BASE ", \"sae\": {\"ratio\": 0}}";
    write_file(good, g, strlen(g));
    write_file(bad, b, strlen(b));
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s config check %s", autointerp_bin(), good);
    assert_int_equal(run_capture(cmd, &out), 0);
    assert_non_null(strstr(out, "\"n_features\":\t200"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s config check %s", autointerp_bin(), bad);
    assert_int_equal(run_capture(cmd, &out), 1);
    assert_non_null(strstr(out, "bad.json: sae.ratio"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s config check", autointerp_bin());
    assert_int_equal(run_capture(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s config schema", autointerp_bin());
    assert_int_equal(run_capture(cmd, &out), 0);
    assert_non_null(strstr(out, "| `sae.ratio` | integer | `50` |"));
    free(out);
    test_rmtree(dir);
    free(good);
    free(bad);
    free(dir);
}

/* The README's reference is generated from the schema; this keeps it current. */
static void test_readme_documents_every_key(void **state) {
    (void)state;
    FILE *f = fopen("README.md", "rb");
    if (!f) skip_because("README.md not found from the working directory");
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int count;
    const struct cfg_entry *s = config_schema(&count);
    for (int i = 0; i < count; i++) {
        char row[256];
        snprintf(row, sizeof row, "| `%s` |", s[i].key);
        if (!strstr(buf, row))
            fail_msg("README.md lacks config key %s: regenerate with `bin/autointerp config schema`",
                     s[i].key);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_name_the_key),
        cmocka_unit_test(test_relations_are_checked),
        cmocka_unit_test(test_defaults_fill_every_key),
        cmocka_unit_test(test_hash_ignores_key_order),
        cmocka_unit_test(test_ready_configs_validate),
        cmocka_unit_test(test_cli_config_check),
        cmocka_unit_test(test_readme_documents_every_key),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
