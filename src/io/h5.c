/* h5.c: thin HDF5 helpers with our error style (see h5.h).
 *
 * HDF5 prints its own error stack by default; h5_init turns that off so that the
 * only message a user sees is ours, naming the file (when the caller prefixes it)
 * and the dataset or attribute.
 *
 * The untrusted-file check. libhdf5 1.10 believes the lengths, sizes and
 * offsets a file gives it: the fuzzer found files that make it spin for minutes
 * in the global-heap reader, memcpy a length from the file (a segfault), read
 * past an object header, or malloc 11 GB at H5Fopen (tests/fixtures/fuzz/h5/
 * libhdf5_*). We cannot patch the library, so before this process opens a file
 * a fork()ed child opens it and reads every piece of metadata our readers
 * might touch: every object, every attribute (values included, so the global
 * heap behind variable-length strings is read too), and each dataset's type,
 * dataspace, creation properties and chunk index. The child runs under an
 * address-space limit (so a huge malloc fails at once instead of succeeding
 * lazily) and a timeout; a crash, a hang or an HDF5 error there becomes an
 * error naming the file, and the parent never reaches the bad metadata.
 *
 * Trade-offs: one fork per file (a few milliseconds, even for a parent holding
 * a model: fork copies page tables, not pages), remembered per (device, inode,
 * size, mtime, ctime) so that reopening an unchanged file costs a stat. Dataset
 * contents are not read in the child (that would read whole token files); the
 * readers below bound what they read from a dataset's claims themselves. The
 * child shares the parent's libhdf5 state as of the fork, so no other thread
 * may be inside libhdf5 at that moment (the thread-safe build's global lock
 * would be held forever in the child): the project uses HDF5 from one thread.
 */
#include "io/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/error.h"

void h5_init(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

hid_t h5_create(const char *path) {
    h5_init();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) err_set("%s: cannot create HDF5 file", path);
    return f;
}

/* ---- The untrusted-file check (see the top of this file) ---------------- */

enum {
    CHECK_DEFAULT_SECONDS = 30,
    CHECK_OK = 0,     /* the child's exit status: every read succeeded */
    CHECK_FAILED = 2, /* an HDF5 error; the child wrote why to the pipe */
    CHECK_WHY_MAX = 600,
    CHECKED_MAX = 64,    /* files remembered as checked */
    CHECK_FRESH_SEC = 2, /* files changed more recently are not remembered */
};
#define CHECK_MARGIN_BYTES (1ull << 30) /* the child's address space beyond the parent's */

/* What the child found wrong first (the rest of the walk stops there), and
 * what libhdf5 said about the last failure of one of its calls. */
struct check_walk {
    const char *object; /* name of the object being read, "." for the root */
    char detail[200];   /* innermost entry of libhdf5's error stack */
    char why[CHECK_WHY_MAX];
};

/* H5Ewalk2 callback: entry 0 of an upward walk is where the error arose
 * ("addr overflow, addr = ...", "bad version number for message"). */
static herr_t note_innermost(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0)
        snprintf(data, sizeof((struct check_walk *)0)->detail, "%s", e->desc ? e->desc : "");
    return 0;
}

/* Installed as libhdf5's error handler in the child: it runs when a library
 * call fails, before the next call clears the error stack. */
static herr_t note_hdf5_error(hid_t stack, void *data) {
    struct check_walk *w = data;
    if (!w->why[0]) H5Ewalk2(stack, H5E_WALK_UPWARD, note_innermost, w->detail);
    return 0;
}

__attribute__((format(printf, 2, 3))) static herr_t walk_fail(struct check_walk *w, const char *fmt,
                                                              ...) {
    if (w->why[0]) return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
    if (w->detail[0] && n > 0 && (size_t)n < sizeof w->why)
        snprintf(w->why + n, sizeof w->why - (size_t)n, ": %s", w->detail);
    return -1;
}

static const char *shown_name(const char *object) {
    return strcmp(object, ".") == 0 ? "/" : object;
}

/* Read one attribute's value whole, as the memory type libhdf5 would convert
 * it to (variable-length strings and sequences come from the global heap and
 * are given back). */
static int check_attr_value(hid_t a, size_t *claimed) {
    hid_t ft = H5Aget_type(a), space = H5Aget_space(a), mt = -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (ft >= 0) mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT);
    if (ft >= 0 && mt < 0) mt = H5Tcopy(ft); /* classes without a native form: as stored */
    size_t size = mt >= 0 ? H5Tget_size(mt) : 0, bytes = 0;
    int rc = ft < 0 || space < 0 || n < 0 || mt < 0 || size == 0 ? -1 : 0;
    if (rc == 0 && __builtin_mul_overflow((size_t)n, size, &bytes)) rc = -1;
    void *buf = rc == 0 && n > 0 ? malloc(bytes) : NULL;
    if (rc == 0 && n > 0 && !buf) { /* a claim beyond the address-space limit */
        *claimed = bytes;
        rc = -2;
    }
    if (buf && H5Aread(a, mt, buf) < 0) rc = -1;
    if (buf && rc == 0 &&
        (H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tdetect_class(mt, H5T_STRING) > 0))
        H5Dvlen_reclaim(mt, space, H5P_DEFAULT, buf);
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    if (space >= 0) H5Sclose(space);
    if (ft >= 0) H5Tclose(ft);
    return rc;
}

/* H5Aiterate2 callback: look the attribute up by name as our readers do
 * (H5Aexists, H5Aopen), then read it. */
static herr_t check_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    struct check_walk *w = data;
    w->detail[0] = 0;
    size_t claimed = 0;
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    int rc = a >= 0 ? check_attr_value(a, &claimed) : -1;
    if (a >= 0) H5Aclose(a);
    if (rc == -2)
        return walk_fail(w, "corrupt HDF5 file: object '%s' attribute '%s' claims %zu bytes",
                         shown_name(w->object), name, claimed);
    if (rc != 0)
        return walk_fail(w, "corrupt HDF5 file: HDF5 error reading object '%s' attribute '%s'",
                         shown_name(w->object), name);
    return 0;
}

/* A dataset's type, shape, creation properties (filters, chunk shape, fill
 * value) and chunk index: what h5_shape, h5_read and h5_read_rows consult
 * before reading data. */
static int check_dataset(hid_t ds, struct check_walk *w) {
    w->detail[0] = 0;
    hid_t t = H5Dget_type(ds), space = H5Dget_space(ds), dcpl = H5Dget_create_plist(ds);
    hsize_t dims[H5S_MAX_RANK], maxdims[H5S_MAX_RANK];
    int rc = t >= 0 && space >= 0 && dcpl >= 0 ? 0 : -1;
    if (rc == 0 && H5Sget_simple_extent_dims(space, dims, maxdims) < 0) rc = -1;
    int n_filters = rc == 0 ? H5Pget_nfilters(dcpl) : -1;
    if (n_filters < 0) rc = -1;
    for (int i = 0; rc == 0 && i < n_filters; i++) {
        unsigned flags, config, cd[16];
        size_t n_cd = 16;
        char name[64];
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &n_cd, cd, sizeof name, name, &config) < 0)
            rc = -1;
    }
    if (rc == 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, H5S_MAX_RANK, dims) < 0)
        rc = -1;
    if (rc == 0) (void)H5Dget_storage_size(ds); /* walks the chunk index; 0 is also a size */
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (t >= 0) H5Tclose(t);
    if (rc != 0)
        return walk_fail(w,
                         "corrupt HDF5 file: HDF5 error reading the type, shape or layout of "
                         "dataset '%s'",
                         shown_name(w->object));
    return 0;
}

/* H5Ovisit2 callback: every group, dataset and named type, the root included. */
static herr_t check_object(hid_t root, const char *name, const H5O_info_t *info, void *data) {
    struct check_walk *w = data;
    w->object = name;
    w->detail[0] = 0;
    hid_t o = H5Oopen(root, name, H5P_DEFAULT);
    if (o < 0)
        return walk_fail(w, "corrupt HDF5 file: HDF5 error opening object '%s'", shown_name(name));
    herr_t rc = H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, check_attr, w);
    if (rc < 0)
        walk_fail(w, "corrupt HDF5 file: HDF5 error listing the attributes of object '%s'",
                  shown_name(name));
    else if (info->type == H5O_TYPE_DATASET)
        rc = check_dataset(o, w);
    H5Oclose(o);
    return rc < 0 ? -1 : 0;
}

/* H5Lvisit callback: a link to another file would have libhdf5 open that file
 * unchecked when a reader follows it, so external and user-defined links are
 * refused (none of the project's formats uses them). */
static herr_t check_link(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    (void)group;
    if (info->type == H5L_TYPE_HARD || info->type == H5L_TYPE_SOFT) return 0;
    return walk_fail(data,
                     "unsupported HDF5 file: link '%s' points into another file "
                     "(external links are not followed)",
                     name);
}

/* In sanitizer builds, a report in the child (libhdf5 over-reading a corrupt
 * file, caught by ASan's memcpy check) runs the death callback inherited from
 * the parent: libFuzzer's would save the input as a crash of the harness,
 * which in fact rejects it cleanly. Absent (NULL) in other builds. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* The child: limits first, then the walk; reports through fd and its exit status.
 * It calls only libhdf5, malloc, snprintf and system calls (the parent may
 * have had other threads, whose locks are frozen here), and ends with _exit
 * so no atexit handler or stdio buffer of the parent runs twice. */
static void check_child(const char *path, int fd, rlim_t as_limit, pid_t parent) {
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM, SIGTERM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL); /* a test framework's or sanitizer's handler would go on */
    /* A hang must not outlive an interrupted parent (the forking thread, which
     * waits for us, so in effect the process). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(CHECK_FAILED);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(NULL);
    struct rlimit core = {0, 0}, as = {as_limit, as_limit};
    setrlimit(RLIMIT_CORE, &core);
    if (as_limit != RLIM_INFINITY) setrlimit(RLIMIT_AS, &as);
    struct check_walk w = {.object = "."};
    H5Eset_auto2(H5E_DEFAULT, note_hdf5_error, &w); /* records; never prints */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        walk_fail(&w, "cannot open HDF5 file (truncated or corrupt?)");
    else if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, check_link, &w) < 0)
        walk_fail(&w, "corrupt HDF5 file: HDF5 error listing its links");
    else if (H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, check_object, &w, H5O_INFO_BASIC) < 0)
        walk_fail(&w, "corrupt HDF5 file: HDF5 error visiting its objects");
    if (!w.why[0]) _exit(CHECK_OK);
    ssize_t unused = write(fd, w.why, strlen(w.why)); /* well under a pipe's buffer */
    (void)unused;
    _exit(CHECK_FAILED);
}

/* The parent's address space now (bytes), from /proc/self/statm; 0 if unknown. */
static unsigned long long address_space_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (f && fscanf(f, "%llu", &pages) != 1) pages = 0;
    if (f) fclose(f);
    return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* Collect the child's message and its exit status; SIGKILL it at the deadline.
 * The pipe's end of file wakes us when the child exits; the poll is sliced so
 * that a write end inherited by some other fork cannot keep us waiting.
 * Returns 1 when the child was killed for the timeout, -1 when waitpid fails
 * (errno set), else 0. */
static int check_wait(pid_t pid, int fd, int secs, int *status, char *why, size_t cap) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t len = 0;
    int eof = 0;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            int saved = errno;
            kill(pid, SIGKILL);
            errno = saved;
            return -1;
        }
        double left = secs - seconds_since(&t0);
        if (left <= 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
            }
            return 1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = eof ? 1 : left < 0.1 ? (int)(left * 1000) + 1 : 100;
        if (poll(&p, eof ? 0 : 1, ms) > 0) {
            char scratch[256];
            int room = len + 1 < cap;
            ssize_t r = read(fd, room ? why + len : scratch, room ? cap - 1 - len : sizeof scratch);
            if (r > 0 && room) len += (size_t)r;
            if (r == 0) eof = 1;
        }
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (len + 1 < cap && poll(&p, 1, 0) > 0) { /* the child is gone: what it wrote is here */
        ssize_t r = read(fd, why + len, cap - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    why[len] = 0;
    return 0;
}

static long g_check_forks;

long h5_check_forks(void) {
    return __atomic_load_n(&g_check_forks, __ATOMIC_RELAXED);
}

/* Fork, walk the file in the child, turn how the child ended into our error. */
static int check_in_child(const char *path, int secs) {
    unsigned long long now = address_space_bytes();
    rlim_t as_limit = now ? (rlim_t)(now + CHECK_MARGIN_BYTES) : RLIM_INFINITY;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return err_errno("%s: cannot check the HDF5 file: pipe", path);
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        close(fds[0]);
        check_child(path, fds[1], as_limit, parent);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return err_errno("%s: cannot check the HDF5 file: fork", path);
    }
    __atomic_add_fetch(&g_check_forks, 1, __ATOMIC_RELAXED);
    char why[CHECK_WHY_MAX];
    int status = 0, waited = check_wait(pid, fds[0], secs, &status, why, sizeof why);
    close(fds[0]);
    if (waited < 0) return err_errno("%s: cannot check the HDF5 file: waitpid", path);
    if (waited == 1)
        return err_set("%s: corrupt HDF5 file: libhdf5 did not finish reading its metadata within "
                       "%d s (AUTOINTERP_H5_CHECK_SECONDS sets the limit)",
                       path, secs);
    if (WIFSIGNALED(status))
        return err_set("%s: corrupt HDF5 file: libhdf5 crashed (signal %d, %s) while reading its "
                       "metadata",
                       path, WTERMSIG(status), strsignal(WTERMSIG(status)));
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == CHECK_OK) return 0;
    if (code == CHECK_FAILED && why[0]) return err_set("%s: %s", path, why);
    return err_set("%s: corrupt HDF5 file: the check of its metadata ended with exit status %d "
                   "(a failed allocation or a sanitizer report inside libhdf5?)",
                   path, code);
}

/* AUTOINTERP_H5_CHECK_SECONDS, or the default. */
static int check_seconds(int *secs) {
    const char *s = getenv("AUTOINTERP_H5_CHECK_SECONDS");
    *secs = CHECK_DEFAULT_SECONDS;
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 86400)
        return err_set("AUTOINTERP_H5_CHECK_SECONDS must be a whole number of seconds 0..86400 "
                       "(0 turns the HDF5 file check off), got '%s'",
                       s);
    *secs = (int)v;
    return 0;
}

/* Files that passed, by identity and version. A file changed within the last
 * CHECK_FRESH_SEC seconds is not remembered: timestamps are kept at the kernel
 * tick, so a rewrite in place moments later could look unchanged. ctime cannot
 * be set back by a user (touch -d, rsync -t), unlike mtime. */
struct checked_file {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};
static struct checked_file g_checked[CHECKED_MAX];
static int g_n_checked, g_next_checked;
static pthread_mutex_t g_check_lock = PTHREAD_MUTEX_INITIALIZER;

static int same_file(const struct checked_file *a, const struct checked_file *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static int was_checked(const struct checked_file *k) {
    for (int i = 0; i < g_n_checked; i++)
        if (same_file(&g_checked[i], k)) return 1;
    return 0;
}

static void remember_checked(const struct checked_file *k) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (k->ctime.tv_sec > now.tv_sec - CHECK_FRESH_SEC ||
        k->mtime.tv_sec > now.tv_sec - CHECK_FRESH_SEC)
        return;
    g_checked[g_next_checked] = *k;
    g_next_checked = (g_next_checked + 1) % CHECKED_MAX;
    if (g_n_checked < CHECKED_MAX) g_n_checked++;
}

void h5_check_forget(void) {
    pthread_mutex_lock(&g_check_lock);
    g_n_checked = g_next_checked = 0;
    pthread_mutex_unlock(&g_check_lock);
}

int h5_check_file(const char *path) {
    int secs;
    if (check_seconds(&secs) != 0) return err_prefix("%s", path);
    if (secs == 0) return 0;
    struct stat st;
    if (stat(path, &st) != 0) return err_errno("%s: cannot open", path);
    struct checked_file k = {st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
    pthread_mutex_lock(&g_check_lock); /* one check at a time: each is one child */
    int rc = was_checked(&k) ? 0 : check_in_child(path, secs);
    if (rc == 0) remember_checked(&k);
    pthread_mutex_unlock(&g_check_lock);
    return rc;
}

hid_t h5_open_ro(const char *path) {
    h5_init();
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        err_errno("%s: cannot open", path);
        return -1;
    }
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        err_set("%s: not an HDF5 file (or truncated/corrupt)", path);
        return -1;
    }
    if (h5_check_file(path) != 0) return -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) err_set("%s: cannot open HDF5 file (truncated or corrupt?)", path);
    return f;
}

int h5_close(hid_t file) {
    if (file < 0) return 0;
    if (H5Fclose(file) < 0) return err_set("cannot close HDF5 file (write error?)");
    return 0;
}

int h5_exists(hid_t loc, const char *name) {
    /* H5Lexists needs every intermediate link to exist: walk the path. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf; (p = strchr(p, '/')); p++) {
        *p = 0;
        if (buf[0] && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
        *p = '/';
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
}

hid_t h5_group(hid_t loc, const char *name) {
    if (h5_exists(loc, name)) {
        hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
        if (g < 0) err_set("cannot open group '%s'", name);
        return g;
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(loc, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g < 0) err_set("cannot create group '%s'", name);
    return g;
}

int h5_write(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims,
             const void *data) {
    /* The readers (h5_shape, h5_read) handle at most 8 dimensions, and so does
     * the chunk shape below. */
    if (ndim < 0 || ndim > 8)
        return err_set("dataset '%s': rank %d is not supported (at most 8)", name, ndim);
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    if (space < 0) return err_set("dataset '%s': cannot create dataspace", name);
    hsize_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= dims[i];
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* Large datasets are chunked along the first dimension so row reads are cheap.
     * A chunk holds whole rows and at most 512 KiB whatever the element size, so
     * it stays inside HDF5's default 1 MiB chunk cache: a chunk bigger than the
     * cache would be re-read from disk on every small row read. */
    size_t esize = H5Tget_size(type);
    if (ndim >= 1 && numel * esize > (1u << 20) && dims[0] > 1) {
        hsize_t chunk[8];
        hsize_t row_bytes = numel / dims[0] * esize;
        hsize_t rows = (1u << 19) / (row_bytes ? row_bytes : 1);
        if (rows < 1) rows = 1;
        if (rows > dims[0]) rows = dims[0];
        chunk[0] = rows;
        for (int i = 1; i < ndim; i++)
            chunk[i] = dims[i];
        H5Pset_chunk(dcpl, ndim, chunk);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(loc, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    if (ds < 0) {
        H5Sclose(space);
        return err_set("dataset '%s': cannot create (exists already?)", name);
    }
    int rc = 0;
    if (numel > 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = err_set("dataset '%s': write failed", name);
    H5Dclose(ds);
    H5Sclose(space);
    return rc;
}

int h5_write_f32(hid_t loc, const char *name, int ndim, const hsize_t *dims, const float *data) {
    return h5_write(loc, name, H5T_NATIVE_FLOAT, ndim, dims, data);
}

int h5_shape(hid_t loc, const char *name, int max_dims, int *ndim, hsize_t *dims) {
    if (!h5_exists(loc, name)) return err_set("dataset '%s' is missing", name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return err_set("'%s' is not a readable dataset", name);
    hid_t space = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(space);
    int rc = 0;
    if (nd < 0 || nd > max_dims)
        rc = err_set("dataset '%s': rank %d is not supported (at most %d)", name, nd, max_dims);
    else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        *ndim = nd;
    }
    H5Sclose(space);
    H5Dclose(ds);
    return rc;
}

/* HDF5 converts a number with the bit layout its file declares, unchecked: a
 * precision of 0 or bits placed past the type's size crash its converter. So
 * a file's integer or float type must describe bits inside its bytes. */
static int numeric_layout_ok(hid_t ft) {
    size_t size = H5Tget_size(ft), prec = H5Tget_precision(ft), bits = 8 * size;
    int off = H5Tget_offset(ft);
    if (size < 1 || size > 16 || prec < 1 || off < 0 || (size_t)off + prec > bits) return 0;
    if (H5Tget_class(ft) != H5T_FLOAT) return 1;
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_fields(ft, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
    return spos < bits && esize >= 1 && epos + esize <= bits && msize >= 1 && mpos + msize <= bits;
}

/* A shape is only a claim: a few kilobytes of file can declare a chunked dataset
 * of 2^34 elements whose chunks were never written (HDF5 then reads fill
 * values), and reading it whole would allocate and touch all of that. Every
 * writer here writes each element and none compresses, so a numeric dataset
 * must store at least the bytes its shape implies; a compressed one (another
 * tool's) may store less, but not beyond deflate's ratio of about 1000:1. */
static int check_stored(hid_t ds, const char *name, hsize_t numel) {
    hid_t ft = H5Dget_type(ds);
    if (ft < 0) return err_set("dataset '%s': cannot read its type", name);
    H5T_class_t cls = H5Tget_class(ft);
    size_t fsize = H5Tget_size(ft);
    int layout_ok = cls != H5T_INTEGER && cls != H5T_FLOAT ? 1 : numeric_layout_ok(ft);
    H5Tclose(ft);
    if (!layout_ok) return err_set("dataset '%s': its number type is malformed", name);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) return 0;
    hid_t dcpl = H5Dget_create_plist(ds);
    int n_filters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    double need = (double)numel * (double)fsize / (n_filters > 0 ? 1100.0 : 1.0);
    hsize_t stored = H5Dget_storage_size(ds);
    if ((double)stored < need)
        return err_set("dataset '%s': its shape holds %llu elements but the file stores only %llu "
                       "bytes of them (truncated or corrupt file?)",
                       name, (unsigned long long)numel, (unsigned long long)stored);
    return 0;
}

int h5_read(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *expect,
            hsize_t *dims_out, void **out) {
    *out = NULL;
    int nd;
    hsize_t dims[8];
    if (h5_shape(loc, name, 8, &nd, dims) != 0) return -1;
    if (nd != ndim) return err_set("dataset '%s': expected rank %d, got %d", name, ndim, nd);
    hsize_t numel = 1;
    for (int i = 0; i < nd; i++) {
        if (expect && expect[i] && expect[i] != dims[i])
            return err_set("dataset '%s': dimension %d is %llu, expected %llu", name, i,
                           (unsigned long long)dims[i], (unsigned long long)expect[i]);
        if (__builtin_mul_overflow(numel, dims[i], &numel))
            return err_set("dataset '%s': its shape's element count overflows 64 bits", name);
        if (dims_out) dims_out[i] = dims[i];
    }
    size_t esize = H5Tget_size(type), bytes;
    if (__builtin_mul_overflow(numel, esize, &bytes))
        return err_set("dataset '%s': %llu elements of %zu bytes overflow the address space", name,
                       (unsigned long long)numel, esize);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return err_set("'%s' is not a readable dataset", name);
    if (check_stored(ds, name, numel) != 0) {
        H5Dclose(ds);
        return -1;
    }
    void *buf = xmalloc(bytes);
    if (!buf) {
        H5Dclose(ds);
        return err_prefix("dataset '%s'", name);
    }
    if (numel > 0 && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        H5Dclose(ds);
        free(buf);
        return err_set("dataset '%s': read failed (truncated or corrupt file?)", name);
    }
    H5Dclose(ds);
    *out = buf;
    return 0;
}

int h5_read_rows(hid_t loc, const char *name, hid_t type, hsize_t row0, hsize_t n_rows, void *out) {
    int nd;
    hsize_t dims[8];
    if (h5_shape(loc, name, 8, &nd, dims) != 0) return -1;
    if (nd < 1) return err_set("dataset '%s' is a scalar, expected rows", name);
    if (row0 > dims[0] || n_rows > dims[0] - row0)
        return err_set("dataset '%s': rows %llu..%llu out of range (it has %llu)", name,
                       (unsigned long long)row0, (unsigned long long)(row0 + n_rows),
                       (unsigned long long)dims[0]);
    if (n_rows == 0) return 0;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return err_set("'%s' is not a readable dataset", name);
    hid_t ft = H5Dget_type(ds);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    int layout_ok = ft >= 0 && (cls != H5T_INTEGER && cls != H5T_FLOAT ? 1 : numeric_layout_ok(ft));
    if (ft >= 0) H5Tclose(ft);
    if (!layout_ok) {
        H5Dclose(ds);
        return err_set("dataset '%s': its number type is malformed", name);
    }
    hid_t fspace = H5Dget_space(ds);
    hsize_t start[8] = {0}, count[8];
    start[0] = row0;
    count[0] = n_rows;
    for (int i = 1; i < nd; i++)
        count[i] = dims[i];
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mspace = H5Screate_simple(nd, count, NULL);
    herr_t st = H5Dread(ds, type, mspace, fspace, H5P_DEFAULT, out);
    H5Sclose(mspace);
    H5Sclose(fspace);
    H5Dclose(ds);
    if (st < 0) return err_set("dataset '%s': read failed (truncated or corrupt file?)", name);
    return 0;
}

static int attr_write(hid_t loc, const char *name, hid_t type, const void *value) {
    if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, type, value) < 0) rc = err_set("attribute '%s': write failed", name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

/* Fixed-length, NUL-terminated: the bytes live in the attribute message itself.
 * A variable-length string would go to the file's global heap, whose reader
 * (H5HG_read) trusts lengths from the file and is where corrupt files made
 * libhdf5 1.10 hang or crash (the fuzzer's libhdf5_* inputs). */
int h5_attr_str(hid_t loc, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(loc, name, t, value);
    H5Tclose(t);
    return rc;
}

int h5_attr_i64(hid_t loc, const char *name, int64_t value) {
    return attr_write(loc, name, H5T_NATIVE_INT64, &value);
}

int h5_attr_f64(hid_t loc, const char *name, double value) {
    return attr_write(loc, name, H5T_NATIVE_DOUBLE, &value);
}

int h5_has_attr(hid_t loc, const char *name) {
    return H5Aexists(loc, name) > 0;
}

static hid_t attr_open(hid_t loc, const char *name) {
    if (H5Aexists(loc, name) <= 0) {
        err_set("attribute '%s' is missing", name);
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        err_set("attribute '%s': cannot open", name);
        return -1;
    }
    /* Our attributes are single values: reading an array into one would make
     * H5Aread write past it (a corrupt or foreign file). */
    hid_t space = H5Aget_space(a);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    if (n != 1) {
        H5Aclose(a);
        err_set("attribute '%s': expected a single value, got %lld", name, (long long)n);
        return -1;
    }
    return a;
}

int h5_get_attr_str(hid_t loc, const char *name, char **out) {
    *out = NULL;
    hid_t a = attr_open(loc, name);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING) {
        rc = err_set("attribute '%s': expected a string", name);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5Tget_cset(ft)); /* HDF5 will not convert between ASCII and UTF-8 */
        char *s = NULL;
        if (H5Aread(a, t, &s) < 0 || !s)
            rc = err_set("attribute '%s': read failed", name);
        else {
            *out = xstrdup(s);
            H5free_memory(s);
            if (!*out) rc = -1;
        }
        H5Tclose(t);
    } else {
        size_t n = H5Tget_size(ft);
        char *s = xcalloc(n + 1, 1);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, n + 1);
        H5Tset_cset(t, H5Tget_cset(ft));
        if (!s || H5Aread(a, t, s) < 0) {
            free(s);
            rc = err_set("attribute '%s': read failed", name);
        } else
            *out = s;
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

static int attr_read_num(hid_t loc, const char *name, hid_t type, void *out) {
    hid_t a = attr_open(loc, name);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(ft);
    int layout_ok = numeric_layout_ok(ft);
    H5Tclose(ft);
    int rc = 0;
    if (cls != H5T_INTEGER && cls != H5T_FLOAT)
        rc = err_set("attribute '%s': expected a number", name);
    else if (!layout_ok)
        rc = err_set("attribute '%s': its number type is malformed", name);
    else if (H5Aread(a, type, out) < 0)
        rc = err_set("attribute '%s': read failed", name);
    H5Aclose(a);
    return rc;
}

int h5_get_attr_i64(hid_t loc, const char *name, int64_t *out) {
    return attr_read_num(loc, name, H5T_NATIVE_INT64, out);
}

int h5_get_attr_f64(hid_t loc, const char *name, double *out) {
    return attr_read_num(loc, name, H5T_NATIVE_DOUBLE, out);
}
