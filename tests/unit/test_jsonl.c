/* test_jsonl.c: JSONL appends are whole lines, a torn tail is skipped on read and
 * repaired by the next append, and corruption anywhere but the end is an error
 * that names the file and the line. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/jsonl.h"
#include "util/error.h"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = test_tmpdir("jsonl");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

/* Collects the "id" of every record and the line numbers they came from. */
struct seen {
    int n;
    int ids[512];
    int lines[512];
    int stop_at; /* return stop_value when this id is seen (0 = never) */
    int stop_value;
};

static int collect(const cJSON *obj, int line_no, void *ctx) {
    struct seen *s = ctx;
    const cJSON *id = cJSON_GetObjectItem(obj, "id");
    assert_true(cJSON_IsNumber(id));
    s->ids[s->n] = id->valueint;
    s->lines[s->n] = line_no;
    s->n++;
    if (s->stop_at && id->valueint == s->stop_at) {
        if (s->stop_value < 0) return err_set("record %d is unacceptable", id->valueint);
        return s->stop_value;
    }
    return 0;
}

static void append_id(const char *path, int id, const char *text) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    if (text) cJSON_AddStringToObject(o, "text", text);
    if (jsonl_append(path, o) != 0) fail_msg("append: %s", err_msg());
    cJSON_Delete(o);
}

static char *slurp(const char *path) {
    size_t n;
    char *s = read_file_all(path, 0, &n);
    assert_non_null(s);
    return s;
}

static char *fresh(const char *name) {
    char *path = path_join(g_dir, name);
    unlink(path);
    return path;
}

static void test_append_then_read_in_order(void **state) {
    (void)state;
    char *path = fresh("a.jsonl");
    append_id(path, 1, "multi\nline \"quoted\" text");
    append_id(path, 2, "caf\xc3\xa9 \xe2\x86\x92 ok");
    append_id(path, 3, NULL);
    char *text = slurp(path);
    assert_string_equal(text, "{\"id\":1,\"text\":\"multi\\nline \\\"quoted\\\" text\"}\n"
                              "{\"id\":2,\"text\":\"caf\xc3\xa9 \xe2\x86\x92 ok\"}\n"
                              "{\"id\":3}\n");
    free(text);
    struct seen s = {0};
    int torn = -1;
    assert_int_equal(jsonl_read(path, 0, collect, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s.ids[i], i + 1);
        assert_int_equal(s.lines[i], i + 1);
    }
    free(path);
}

static void test_missing_file(void **state) {
    (void)state;
    char *path = fresh("missing.jsonl");
    struct seen s = {0};
    int torn = -1;
    assert_int_equal(jsonl_read(path, 1, collect, &s, &torn), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(torn, 0);
    assert_int_equal(jsonl_read(path, 0, collect, &s, NULL), -1);
    assert_non_null(strstr(err_msg(), path));
    free(path);
}

/* Each kind of tail a crash can leave: cut mid-object, complete object without
 * its newline, zero-filled blocks, a newline-terminated garbage line. */
static void test_torn_last_line_is_skipped_and_reported(void **state) {
    (void)state;
    static const char good[] = "{\"id\":1}\n{\"id\":2}\n";
    static const struct {
        const char *tail;
        size_t n;
    } tails[] = {
        {"{\"id\":3,\"te", 11},        {"{\"id\":3}", 8},
        {"\0\0\0\0\0\0\0\0", 8},       {"{\"id\":3,\"t\n", 11},
        {"{\"id\":3,\"t\n\n  \n", 15},
    };
    char *path = fresh("torn.jsonl");
    for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
        char buf[64];
        memcpy(buf, good, sizeof good - 1);
        memcpy(buf + sizeof good - 1, tails[k].tail, tails[k].n);
        write_file(path, buf, sizeof good - 1 + tails[k].n);
        struct seen s = {0};
        int torn = 0;
        if (jsonl_read(path, 0, collect, &s, &torn) != 0) fail_msg("tail %zu: %s", k, err_msg());
        assert_int_equal(s.n, 2);
        assert_int_equal(s.ids[1], 2);
        if (torn != 1) fail_msg("tail %zu was not reported as torn", k);
    }
    free(path);
}

static void test_append_after_torn_tail_yields_clean_file(void **state) {
    (void)state;
    static const char *tails[] = {
        "{\"id\":3,\"te",        "{\"id\":3}",   "[1,2,\n", "not json at all\n",
        "{\"id\":3,\"t\n\n  \n", "\n\n{\"id\":3"};
    char *path = fresh("repair.jsonl");
    for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
        char buf[128];
        int n = snprintf(buf, sizeof buf, "{\"id\":1}\n{\"id\":2}\n%s", tails[k]);
        int blank_lines = k == 5 ? 2 : 0; /* blank lines before a torn tail stay */
        write_file(path, buf, (size_t)n);
        append_id(path, 4, NULL);
        char *text = slurp(path);
        const char *want = blank_lines ? "{\"id\":1}\n{\"id\":2}\n\n\n{\"id\":4}\n"
                                       : "{\"id\":1}\n{\"id\":2}\n{\"id\":4}\n";
        if (strcmp(text, want) != 0) fail_msg("tail %zu: file after append is:\n%s", k, text);
        free(text);
        struct seen s = {0};
        int torn = -1;
        assert_int_equal(jsonl_read(path, 0, collect, &s, &torn), 0);
        assert_int_equal(torn, 0);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.ids[2], 4);
        assert_int_equal(s.lines[2], 3 + blank_lines);
    }
    /* A file that is nothing but a torn line is emptied first. */
    write_file(path, "{\"id\":", 6);
    append_id(path, 9, NULL);
    char *text = slurp(path);
    assert_string_equal(text, "{\"id\":9}\n");
    free(text);
    free(path);
}

static void test_corrupt_middle_line_is_an_error_naming_the_line(void **state) {
    (void)state;
    char *path = fresh("corrupt.jsonl");
    const char body[] = "{\"id\":1}\n{\"id\":2}\n{\"id\":3,,}\n{\"id\":4}\n";
    write_file(path, body, sizeof body - 1);
    struct seen s = {0};
    int torn = 0;
    assert_int_equal(jsonl_read(path, 0, collect, &s, &torn), -1);
    const char *msg = err_msg();
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, "line 3"));
    assert_non_null(strstr(msg, "invalid JSON"));
    assert_int_equal(torn, 0);
    /* a bad line followed only by a torn tail is still in the middle */
    const char body2[] = "{\"id\":1}\n{oops}\n{\"id\":3";
    write_file(path, body2, sizeof body2 - 1);
    assert_int_equal(jsonl_read(path, 0, collect, &s, &torn), -1);
    assert_non_null(strstr(err_msg(), "line 2"));
    free(path);
}

static void test_non_object_line_rejected(void **state) {
    (void)state;
    char *path = fresh("nonobj.jsonl");
    const char body[] = "{\"id\":1}\n[1,2,3]\n{\"id\":3}\n";
    write_file(path, body, sizeof body - 1);
    struct seen s = {0};
    assert_int_equal(jsonl_read(path, 0, collect, &s, NULL), -1);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "line 2: expected a JSON object, got an array"));
    const char body2[] = "{\"id\":1}\n\"just a string\"\n{\"id\":3}\n";
    write_file(path, body2, sizeof body2 - 1);
    assert_int_equal(jsonl_read(path, 0, collect, &s, NULL), -1);
    assert_non_null(strstr(err_msg(), "line 2: expected a JSON object, got a string"));
    const char body3[] = "{\"id\":1} {\"id\":2}\n{\"id\":3}\n";
    write_file(path, body3, sizeof body3 - 1);
    assert_int_equal(jsonl_read(path, 0, collect, &s, NULL), -1);
    assert_non_null(strstr(err_msg(), "line 1: invalid JSON"));

    cJSON *arr = cJSON_CreateArray();
    assert_int_equal(jsonl_append(path, arr), -1);
    assert_non_null(strstr(err_msg(), "got an array"));
    cJSON_Delete(arr);
    free(path);
}

static void test_blank_lines_ignored_and_line_numbers_physical(void **state) {
    (void)state;
    char *path = fresh("blank.jsonl");
    const char body[] = "\n{\"id\":1}\r\n  \n{\"id\":2}\n";
    write_file(path, body, sizeof body - 1);
    struct seen s = {0};
    int torn = -1;
    assert_int_equal(jsonl_read(path, 0, collect, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.lines[0], 2);
    assert_int_equal(s.lines[1], 4);
    free(path);
}

static void test_callback_stops_the_read(void **state) {
    (void)state;
    char *path = fresh("stop.jsonl");
    for (int i = 1; i <= 5; i++)
        append_id(path, i, NULL);
    struct seen s = {.stop_at = 2, .stop_value = 7};
    assert_int_equal(jsonl_read(path, 0, collect, &s, NULL), 7);
    assert_int_equal(s.n, 2);
    struct seen e = {.stop_at = 4, .stop_value = -1};
    assert_int_equal(jsonl_read(path, 0, collect, &e, NULL), -1);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "line 4"));
    assert_non_null(strstr(err_msg(), "record 4 is unacceptable"));
    free(path);
}

/* Several processes appending at once: no line is lost or interleaved. */
static void test_concurrent_appenders_keep_whole_lines(void **state) {
    (void)state;
    char *path = fresh("many.jsonl");
    enum { N_PROC = 4, N_EACH = 25 };
    char pad[300];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    pid_t pids[N_PROC];
    for (int p = 0; p < N_PROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            for (int i = 0; i < N_EACH; i++) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "id", p * 100 + i);
                cJSON_AddStringToObject(o, "pad", pad);
                if (jsonl_append(path, o) != 0) _exit(1);
                cJSON_Delete(o);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < N_PROC; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    struct seen s = {0};
    int torn = -1;
    assert_int_equal(jsonl_read(path, 0, collect, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.n, N_PROC * N_EACH);
    int count[N_PROC] = {0};
    for (int i = 0; i < s.n; i++)
        count[s.ids[i] / 100]++;
    for (int p = 0; p < N_PROC; p++)
        assert_int_equal(count[p], N_EACH);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_then_read_in_order),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_torn_last_line_is_skipped_and_reported),
        cmocka_unit_test(test_append_after_torn_tail_yields_clean_file),
        cmocka_unit_test(test_corrupt_middle_line_is_an_error_naming_the_line),
        cmocka_unit_test(test_non_object_line_rejected),
        cmocka_unit_test(test_blank_lines_ignored_and_line_numbers_physical),
        cmocka_unit_test(test_callback_stops_the_read),
        cmocka_unit_test(test_concurrent_appenders_keep_whole_lines),
    };
    return cmocka_run_group_tests_name("jsonl", tests, setup, teardown);
}
