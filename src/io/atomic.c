/* atomic.c: temp-file-and-rename writes and small file helpers (see atomic.h). */
#include "io/atomic.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

static atomic_uint tmp_counter;

char *atomic_tmp_path(const char *path) {
    size_t n = strlen(path) + 48;
    char *tmp = xmalloc(n);
    if (!tmp) return NULL;
    snprintf(tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    return tmp;
}

static int fsync_dir_of(const char *path) {
    char *copy = xstrdup(path);
    if (!copy) return -1;
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        err_errno("%s: cannot open directory to sync", dir);
        free(copy);
        return -1;
    }
    /* Some file systems refuse fsync on directories (EINVAL); the rename is still
     * atomic there, only its durability is the file system's business. */
    if (fsync(fd) != 0 && errno != EINVAL) {
        err_errno("%s: fsync of directory failed", dir);
        close(fd);
        free(copy);
        return -1;
    }
    close(fd);
    free(copy);
    return 0;
}

int atomic_rename(const char *tmp_path, const char *final_path) {
    int fd = open(tmp_path, O_RDONLY);
    if (fd < 0) return err_errno("%s: cannot reopen temporary file", tmp_path);
    if (fsync(fd) != 0) {
        err_errno("%s: fsync failed", tmp_path);
        close(fd);
        return -1;
    }
    close(fd);
    if (rename(tmp_path, final_path) != 0)
        return err_errno("%s: cannot rename temporary file into place", final_path);
    return fsync_dir_of(final_path);
}

int atomic_open(struct atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    af->final_path = xstrdup(path);
    af->tmp_path = atomic_tmp_path(path);
    if (!af->final_path || !af->tmp_path) {
        free(af->final_path);
        free(af->tmp_path);
        return -1;
    }
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        err_errno("%s: cannot create", af->tmp_path);
        free(af->final_path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return -1;
    }
    return 0;
}

static void atomic_release(struct atomic_file *af) {
    free(af->final_path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

int atomic_commit(struct atomic_file *af) {
    int rc = 0;
    if (fflush(af->fp) != 0 || ferror(af->fp)) rc = err_errno("%s: write failed", af->final_path);
    if (rc == 0 && fsync(fileno(af->fp)) != 0) rc = err_errno("%s: fsync failed", af->final_path);
    if (fclose(af->fp) != 0 && rc == 0) rc = err_errno("%s: close failed", af->final_path);
    af->fp = NULL;
    if (rc == 0 && rename(af->tmp_path, af->final_path) != 0)
        rc = err_errno("%s: cannot rename temporary file into place", af->final_path);
    if (rc == 0) rc = fsync_dir_of(af->final_path);
    if (rc != 0) unlink(af->tmp_path);
    atomic_release(af);
    return rc;
}

void atomic_abort(struct atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_release(af);
}

int atomic_write_file(const char *path, const void *data, size_t n) {
    struct atomic_file af;
    if (atomic_open(&af, path) != 0) return -1;
    if (n && fwrite(data, 1, n, af.fp) != n) {
        err_errno("%s: write failed", path);
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}

int mkdir_p(const char *path) {
    char *copy = xstrdup(path);
    if (!copy) return -1;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
            err_errno("%s: cannot create directory", copy);
            free(copy);
            return -1;
        }
        *p = '/';
    }
    if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
        err_errno("%s: cannot create directory", copy);
        free(copy);
        return -1;
    }
    struct stat st;
    if (stat(copy, &st) != 0 || !S_ISDIR(st.st_mode)) {
        err_set("%s: exists and is not a directory", copy);
        free(copy);
        return -1;
    }
    free(copy);
    return 0;
}

char *read_file_all(const char *path, size_t max_bytes, size_t *n_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_errno("%s: cannot open", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        err_errno("%s: cannot stat", path);
        fclose(f);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        err_set("%s: is a directory, expected a file", path);
        fclose(f);
        return NULL;
    }
    if (max_bytes && (size_t)st.st_size > max_bytes) {
        err_set("%s: %lld bytes is over the limit of %zu bytes", path, (long long)st.st_size,
                max_bytes);
        fclose(f);
        return NULL;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = xmalloc(cap);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (max_bytes && n > max_bytes) {
            err_set("%s: over the limit of %zu bytes", path, max_bytes);
            free(buf);
            fclose(f);
            return NULL;
        }
        if (cap - n < 2) {
            char *nb = xrealloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        err_errno("%s: read failed", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (n_out) *n_out = n;
    return buf;
}

int file_copy(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    int rc = in && out ? 0 : err_errno("%s", in ? to : from);
    char *buf = rc == 0 ? xmalloc(1 << 20) : NULL;
    if (rc == 0 && !buf) rc = -1;
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, 1 << 20, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = err_errno("%s", to);
    if (rc == 0 && ferror(in)) rc = err_set("%s: read error", from);
    if (out && (fflush(out) != 0 || fsync(fileno(out)) != 0) && rc == 0) rc = err_errno("%s", to);
    if (out && fclose(out) != 0 && rc == 0) rc = err_errno("%s", to);
    if (in) fclose(in);
    free(buf);
    return rc;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The pid in "<name>.tmp.<pid>.<n>", or 0 when the name is not one of ours. */
static long tmp_owner_pid(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    if (end == t + 5 || *end != '.' || pid <= 0) return 0;
    for (const char *c = end + 1; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    return pid;
}

int atomic_sweep_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : err_errno("%s: cannot list", dir);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = xmalloc(n);
        if (!p) break;
        snprintf(p, n, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            int r = atomic_sweep_stale(p);
            if (r > 0) removed += r;
        } else {
            long pid = tmp_owner_pid(e->d_name);
            if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH && unlink(p) == 0) removed++;
        }
        free(p);
    }
    closedir(d);
    return removed;
}
