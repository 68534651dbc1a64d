/* cache.c: the on-disk response cache (see cache.h). */
#include "llm/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "io/atomic.h"
#include "llm/request.h"
#include "util/error.h"
#include "util/sha256.h"

#define CACHE_FORMAT "autointerp-llm-cache/1"
#define CACHE_MAX_BYTES ((size_t)256 << 20)

char *llm_cache_path(const char *dir, const char *key) {
    size_t n = strlen(dir) + strlen(key) + 16;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/%.2s/%s.json", dir, key, key);
    return p;
}

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Check a parsed entry against its key; fills *resp on success. */
static int verify(const cJSON *e, const char *key, const char **resp) {
    const char *fmt = str_field(e, "format"), *k = str_field(e, "key");
    const char *method = str_field(e, "method"), *path = str_field(e, "path");
    const char *digest = str_field(e, "response_sha256");
    *resp = str_field(e, "response");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(e, "request");
    if (!fmt || strcmp(fmt, CACHE_FORMAT) != 0)
        return err_set("format: expected \"%s\", got %s", CACHE_FORMAT, fmt ? fmt : "none");
    if (!k || strcmp(k, key) != 0) return err_set("key: does not match the file name");
    if (!method || !path || !req || !digest || !*resp)
        return err_set("an entry needs method, path, request, response_sha256 and response");
    cJSON *sorted = json_sorted_copy(req);
    char *body = sorted ? cJSON_PrintUnformatted(sorted) : NULL;
    cJSON_Delete(sorted);
    if (!body) return err_set("request: cannot print");
    char want[65], got[65];
    llm_request_key(method, path, body, want);
    free(body);
    if (strcmp(want, key) != 0) return err_set("request: does not hash to the key");
    sha256_str_hex(*resp, got);
    if (strcmp(got, digest) != 0) return err_set("response: does not match response_sha256");
    return 0;
}

int llm_cache_get(const char *dir, const char *key, char **body, size_t *n) {
    *body = NULL;
    *n = 0;
    char *path = llm_cache_path(dir, key);
    if (!path) return -1;
    if (!file_exists(path)) {
        free(path);
        return 0;
    }
    size_t len;
    char *text = read_file_all(path, CACHE_MAX_BYTES, &len);
    cJSON *e = text ? cJSON_ParseWithLength(text, len) : NULL;
    int rc = -1;
    const char *resp = NULL;
    if (!text)
        ; /* err_msg from read_file_all */
    else if (!e)
        err_set("not valid JSON");
    else if (verify(e, key, &resp) == 0 && (*body = xstrdup(resp))) {
        *n = strlen(resp);
        rc = 1;
    }
    if (rc < 0) err_prefix("%s", path);
    cJSON_Delete(e);
    free(text);
    free(path);
    return rc;
}

/* tmp + rename without fsync: atomic against a killed process (see cache.h). */
static int write_entry(const char *file, const char *text) {
    char *tmp = atomic_tmp_path(file);
    if (!tmp) return -1;
    FILE *f = fopen(tmp, "wb");
    int rc = f ? 0 : err_errno("%s: cannot create", tmp);
    size_t n = strlen(text);
    if (f && fwrite(text, 1, n, f) != n) rc = err_errno("%s: write failed", tmp);
    if (f && fclose(f) != 0 && rc == 0) rc = err_errno("%s: close failed", tmp);
    if (rc == 0 && rename(tmp, file) != 0) rc = err_errno("%s: cannot rename into place", file);
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}

int llm_cache_put(const char *dir, const char *key, const char *method, const char *path,
                  const char *request_body, const char *response, size_t n) {
    char *file = llm_cache_path(dir, key);
    if (!file) return -1;
    char *sub = xstrdup(file);
    if (!sub) {
        free(file);
        return -1;
    }
    *strrchr(sub, '/') = 0;
    int rc = mkdir_p(sub);
    free(sub);
    cJSON *e = cJSON_CreateObject();
    cJSON *req = cJSON_Parse(request_body);
    char *resp = xmalloc(n + 1);
    char digest[65];
    char *text = NULL;
    if (rc == 0 && req && resp) {
        memcpy(resp, response, n);
        resp[n] = 0;
        sha256_str_hex(resp, digest);
        cJSON_AddStringToObject(e, "format", CACHE_FORMAT);
        cJSON_AddStringToObject(e, "key", key);
        cJSON_AddStringToObject(e, "method", method);
        cJSON_AddStringToObject(e, "path", path);
        cJSON_AddItemToObject(e, "request", req);
        req = NULL;
        cJSON_AddStringToObject(e, "response_sha256", digest);
        cJSON_AddStringToObject(e, "response", resp);
        text = cJSON_PrintUnformatted(e);
    }
    if (rc == 0 && !text) rc = err_set("cannot encode the entry (request body not JSON?)");
    if (rc == 0) rc = write_entry(file, text);
    if (rc != 0) err_prefix("cache %s", file);
    free(text);
    free(resp);
    cJSON_Delete(req);
    cJSON_Delete(e);
    free(file);
    return rc;
}
