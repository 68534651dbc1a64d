/* jsonl.c: durable appends and tolerant reads of JSON-lines files (see jsonl.h).
 *
 * Why lines and not one JSON document: a stage that scores 200 features one LLM
 * call at a time must keep every finished feature when it is killed, and an
 * append-only file of independent lines gives that for the price of one write()
 * and one fsync per record.
 *
 * Appending. The whole line (compact JSON, which never contains a raw newline,
 * plus "\n") goes out in a single write() on an O_APPEND descriptor, so lines
 * from concurrent appenders never interleave. An exclusive flock() around
 * "check the tail, write" keeps two appenders from both repairing the same torn
 * tail. The tail check: a crash mid-write can leave a last line without its
 * newline (or, after a file-system crash, garbage such as NUL bytes); that tail
 * is cut off before the new line is written, so the new line never glues onto
 * half a record. For the same reason a newline-terminated last line that is not
 * a JSON object is cut as well (with any blank lines after it): the reader would
 * skip it while it is last but reject it once anything followed it. A short write is rolled back
 * with ftruncate.
 *
 * Reading. Lines are read one at a time (getline), parsed, checked to be objects
 * and handed to the callback. A bad line is held back until we know whether
 * anything follows it: at the very end it is a torn tail (reported through
 * *n_torn and a warning, then skipped); anywhere else the file is corrupt and the
 * read fails naming the line. A last line without a newline is always treated as
 * torn, even if it happens to parse, so that reading agrees with what the next
 * append will do to it. Blank lines are ignored. Line numbers are 1-based
 * physical lines.
 */
#include "io/jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/log.h"

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "an invalid value";
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i]) || s[i] == 0) return 0;
    return 1;
}

/* Parse one line (s[0..n), NUL-terminated at s[n]) as a JSON object. On failure
 * returns NULL and writes the reason into why. */
static cJSON *parse_line(const char *s, size_t n, char *why, size_t why_cap) {
    const char *nul = memchr(s, 0, n);
    if (nul) {
        snprintf(why, why_cap, "NUL byte at column %zu", (size_t)(nul - s) + 1);
        return NULL;
    }
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!obj) {
        size_t at = end ? (size_t)(end - s) : 0;
        char near[24];
        size_t k = 0;
        for (const char *c = end; c && c < s + n && k + 1 < sizeof near; c++)
            near[k++] = (unsigned char)*c < 0x20 ? ' ' : *c;
        near[k] = 0;
        snprintf(why, why_cap, "invalid JSON at column %zu (near '%s')", at + 1, near);
        return NULL;
    }
    while (end && end < s + n && strchr(" \t\r\n", *end))
        end++;
    if (end && end < s + n) {
        snprintf(why, why_cap, "invalid JSON: unexpected text after the value at column %zu",
                 (size_t)(end - s) + 1);
        cJSON_Delete(obj);
        return NULL;
    }
    if (!cJSON_IsObject(obj)) {
        snprintf(why, why_cap, "expected a JSON object, got %s", json_kind(obj));
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* ------------------------------------------------------------------ append */

/* Offset of the last '\n' in [0, end), -1 if none, -2 on a read error. */
static off_t last_newline_before(int fd, off_t end) {
    char buf[1 << 16];
    while (end > 0) {
        off_t start = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
        size_t want = (size_t)(end - start);
        ssize_t got = pread(fd, buf, want, start);
        if (got != (ssize_t)want) return -2;
        for (size_t i = want; i-- > 0;)
            if (buf[i] == '\n') return start + (off_t)i;
        end = start;
    }
    return -1;
}

/* Classify the newline-terminated line [start, nl): 1 blank, 0 a JSON object,
 * -1 anything else; -2 on a read error. */
static int classify_line(int fd, off_t start, off_t nl) {
    size_t n = (size_t)(nl - start);
    char *s = xmalloc(n + 1);
    if (!s) return -2;
    if (pread(fd, s, n, start) != (ssize_t)n) {
        free(s);
        err_errno("cannot read the last line");
        return -2;
    }
    s[n] = 0;
    int kind = 1;
    if (!is_blank(s, n)) {
        char why[160];
        cJSON *obj = parse_line(s, n, why, sizeof why);
        kind = obj ? 0 : -1;
        cJSON_Delete(obj);
    }
    free(s);
    return kind;
}

/* Where to cut so the file ends after its last good line: a tail without a
 * newline goes, and so does a last non-blank line that is not a JSON object
 * (with the blank lines after it). Returns -1 when nothing needs cutting, -2 on
 * error. */
static off_t torn_tail_start(int fd, off_t size, const char **why) {
    off_t nl = last_newline_before(fd, size);
    if (nl == -2) {
        err_errno("cannot read the end of the file");
        return -2;
    }
    /* Whitespace after the last newline is blank to the reader, so the line
     * before it is still the one to judge (it may be a torn record); that
     * whitespace goes too unless the cut already covers it. */
    off_t blank_tail = -1;
    if (nl != size - 1) {
        int kind = classify_line(fd, nl + 1, size);
        if (kind == -2) return -2;
        *why = "without a newline";
        if (kind != 1) return nl + 1;
        blank_tail = nl + 1;
    }
    while (nl >= 0) { /* walk back over blank lines to the last real one */
        off_t prev = last_newline_before(fd, nl);
        if (prev == -2) {
            err_errno("cannot read the end of the file");
            return -2;
        }
        int kind = classify_line(fd, prev + 1, nl);
        if (kind == -2) return -2;
        if (kind == 0) return blank_tail;
        if (kind == -1) {
            *why = "not a JSON object";
            return prev + 1;
        }
        nl = prev;
    }
    return blank_tail;
}

/* Cut a torn or corrupt last line so the next write starts a clean line. */
static int cut_torn_tail(int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) != 0) return err_errno("cannot stat");
    if (st.st_size == 0) return 0;
    const char *why = "";
    off_t cut = torn_tail_start(fd, st.st_size, &why);
    if (cut == -2) return -1;
    if (cut < 0) return 0;
    log_warn("%s: cutting a torn last line (%lld bytes, %s) before appending", path,
             (long long)(st.st_size - cut), why);
    if (ftruncate(fd, cut) != 0) return err_errno("cannot cut the torn last line");
    return 0;
}

static int fsync_parent_dir(const char *path) {
    char *copy = xstrdup(path);
    if (!copy) return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0)
        rc = err_errno("cannot open its directory to sync");
    else if (fsync(fd) != 0 && errno != EINVAL)
        rc = err_errno("cannot sync its directory");
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}

/* One write() of the whole line; a short write is undone. */
static int write_line(int fd, const char *line, size_t n) {
    struct stat st;
    if (fstat(fd, &st) != 0) return err_errno("cannot stat");
    ssize_t w;
    do
        w = write(fd, line, n);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n) return 0;
    int saved = errno;
    if (ftruncate(fd, st.st_size) != 0)
        log_warn("cannot roll back a short write (the reader will skip the torn line)");
    if (w >= 0) return err_set("short write (%zd of %zu bytes; disk full?)", w, n);
    errno = saved;
    return err_errno("write failed");
}

static int append_locked(int fd, const char *path, const char *line, size_t n) {
    if (cut_torn_tail(fd, path) != 0) return -1;
    if (write_line(fd, line, n) != 0) return -1;
    if (fsync(fd) != 0) return err_errno("fsync failed");
    return 0;
}

int jsonl_append(const char *path, const cJSON *obj) {
    if (!cJSON_IsObject(obj))
        return err_set("%s: can only append a JSON object, got %s", path,
                       obj ? json_kind(obj) : "NULL");
    char *text = cJSON_PrintUnformatted(obj);
    if (!text) return err_set("%s: cannot serialise the record (out of memory?)", path);
    size_t n = strlen(text);
    char *line = xmalloc(n + 2);
    if (!line) {
        cJSON_free(text);
        return err_prefix("%s", path);
    }
    memcpy(line, text, n);
    line[n++] = '\n';
    line[n] = 0;
    cJSON_free(text);

    int created = 0;
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        created = 1;
    }
    if (fd < 0) {
        free(line);
        return err_errno("%s: cannot open for appending", path);
    }
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
    }
    if (rc != 0) rc = err_errno("cannot lock");
    if (rc == 0) rc = append_locked(fd, path, line, n);
    if (rc == 0 && created) rc = fsync_parent_dir(path);
    close(fd); /* releases the lock */
    free(line);
    return rc == 0 ? 0 : err_prefix("%s", path);
}

/* -------------------------------------------------------------------- read */

int jsonl_read(const char *path, int missing_ok, jsonl_fn fn, void *ctx, int *n_torn) {
    if (n_torn) *n_torn = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && missing_ok) return 0;
        return err_errno("%s: cannot open", path);
    }
    char *line = NULL, bad_why[160] = "";
    size_t cap = 0;
    ssize_t len;
    int line_no = 0, bad_line = 0, torn_line = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        if (is_blank(line, (size_t)len)) continue;
        if (bad_line) { /* something follows the bad line: it is not a torn tail */
            rc = err_set("%s: line %d: %s", path, bad_line, bad_why);
            break;
        }
        if (line[len - 1] != '\n') { /* only the last line can lack its newline */
            torn_line = line_no;
            snprintf(bad_why, sizeof bad_why, "%zd bytes without a newline", len);
            break;
        }
        cJSON *obj = parse_line(line, (size_t)len, bad_why, sizeof bad_why);
        if (!obj) {
            bad_line = line_no;
            continue;
        }
        rc = fn(obj, line_no, ctx);
        cJSON_Delete(obj);
        if (rc != 0) {
            if (rc < 0) err_prefix("%s: line %d", path, line_no);
            break;
        }
    }
    if (rc == 0 && ferror(f)) rc = err_errno("%s: read failed", path);
    if (rc == 0 && bad_line) torn_line = bad_line;
    if (rc == 0 && torn_line) {
        log_warn("%s: line %d: skipping a torn last line (%s)", path, torn_line, bad_why);
        if (n_torn) *n_torn = 1;
    }
    free(line);
    fclose(f);
    return rc;
}
