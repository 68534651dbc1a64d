/* fuzz_jsonl.c: the JSONL reader, and the append that repairs a torn tail.
 *
 * The input is written as a .jsonl file and read. When the read succeeds (a
 * torn last line is skipped, not an error), appending one record must leave a
 * file that still reads cleanly, holds every record read before plus the new
 * one last, and has no torn line: the append cut whatever the reader skipped.
 */
#include "fuzz_common.h"

#include "io/jsonl.h"

struct fuzz_jsonl_count {
    int n;
    int last_is_marker;
};

static int fuzz_jsonl_visit(const cJSON *obj, int line_no, void *ctx) {
    struct fuzz_jsonl_count *c = ctx;
    FUZZ_CHECK(cJSON_IsObject(obj) && line_no > 0, "callback got a non-object");
    char *s = cJSON_PrintUnformatted(obj);
    FUZZ_CHECK(s != NULL, "print");
    cJSON_free(s);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "fuzz_marker");
    c->last_is_marker = cJSON_IsNumber(m) && m->valuedouble == 12345;
    c->n++;
    return 0;
}

int fuzz_jsonl(const uint8_t *data, size_t size) {
    err_clear();
    const char *path = fuzz_write("input.jsonl", data, size);
    struct fuzz_jsonl_count before = {0, 0};
    int torn = 0;
    int rc = jsonl_read(path, 0, fuzz_jsonl_visit, &before, &torn);
    if (rc != 0) return fuzz_outcome(rc, "jsonl_read");
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "fuzz_marker", 12345);
    rc = jsonl_append(path, rec);
    cJSON_Delete(rec);
    FUZZ_CHECK(rc == 0, "append after a clean read failed: %s", err_msg());
    struct fuzz_jsonl_count after = {0, 0};
    int torn_after = 0;
    rc = jsonl_read(path, 0, fuzz_jsonl_visit, &after, &torn_after);
    FUZZ_CHECK(rc == 0, "read after append failed: %s", err_msg());
    FUZZ_CHECK(torn_after == 0, "a torn line is left after the append");
    FUZZ_CHECK(after.n == before.n + 1 && after.last_is_marker,
               "%d records before, %d after (marker last: %d)", before.n, after.n,
               after.last_is_marker);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_jsonl(data, size);
    return 0;
}
#endif
