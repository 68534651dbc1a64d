/* atomic.h: replace a file so that readers see either the old or the new whole.
 *
 * A writer opens a temporary sibling ("<path>.tmp.<pid>"), writes, and commits:
 * fflush + fsync + rename over the final path + fsync of the directory. A crash
 * at any point leaves the old file (or none) and at worst a stale *.tmp.* file,
 * which no reader ever opens. Libraries that write by file name (HDF5) write to
 * atomic_tmp_path() and then call atomic_rename().
 */
#ifndef AUTOINTERP_IO_ATOMIC_H
#define AUTOINTERP_IO_ATOMIC_H

#include <stddef.h>
#include <stdio.h>

struct atomic_file {
    char *final_path;
    char *tmp_path;
    FILE *fp;
};

int atomic_open(struct atomic_file *af, const char *path);
int atomic_commit(struct atomic_file *af); /* closes; on failure removes the temp */
void atomic_abort(struct atomic_file *af); /* closes and removes the temp */

/* Whole-buffer convenience: write data to path atomically. */
int atomic_write_file(const char *path, const void *data, size_t n);

/* A fresh temporary name beside path (caller frees), and the commit step for
 * files written by name: fsync tmp, rename to final, fsync the directory. */
char *atomic_tmp_path(const char *path);
int atomic_rename(const char *tmp_path, const char *final_path);

/* Remove temporary files ("<name>.tmp.<pid>.<n>") under dir (recursively) whose
 * writing process no longer runs: what a killed writer leaves behind. Files of
 * live processes are left alone. Returns the number removed, or -1. */
int atomic_sweep_stale(const char *dir);

/* mkdir -p; existing directories are fine. */
int mkdir_p(const char *path);

/* Read a whole file into a NUL-terminated malloc'd buffer; *n_out gets the size
 * without the terminator. Refuses files over max_bytes (0 = no limit). */
char *read_file_all(const char *path, size_t max_bytes, size_t *n_out);

/* Copy the bytes of from into to (created or truncated) and fsync it. */
int file_copy(const char *from, const char *to);

int file_exists(const char *path);
/* 1 if path is a directory (following links), else 0. */
int dir_exists(const char *path);

#endif
