/* testserver.h: start and stop tests/servers/openai_server.py from a cmocka test.
 *
 * Header-only (static functions) so that it needs no Makefile entry: a test in
 * tests/unit includes "../servers/testserver.h". The server runs as a child
 * process on 127.0.0.1 with a port it picks itself; the child is told to die
 * with its parent (PR_SET_PDEATHSIG), so a crashed test leaves no server
 * behind, and a cmocka teardown calls test_server_stop even when the test
 * failed. Its request log is read back as cJSON objects so tests can count
 * what the server actually received.
 */
#ifndef AUTOINTERP_TESTSERVER_H
#define AUTOINTERP_TESTSERVER_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define TEST_SERVER_SCRIPT "tests/servers/openai_server.py"

struct test_server {
    pid_t pid;
    int port;
    char dir[512]; /* scratch: port file, log, server output */
    char log_path[600];
    char base_url[64]; /* "http://127.0.0.1:<port>/v1" */
};

static inline void ts_sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Start the server with extra arguments (NULL-terminated, may be NULL), using
 * dir for its files. Returns 0 once it listens, -1 (with a message on stderr)
 * when it did not come up within 10 s. */
static inline int test_server_start(struct test_server *s, const char *dir,
                                    const char *const *extra) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->log_path, sizeof s->log_path, "%s/server-log.jsonl", dir);
    char port_file[600], out_file[600];
    snprintf(port_file, sizeof port_file, "%s/server.port", dir);
    snprintf(out_file, sizeof out_file, "%s/server.out", dir);
    unlink(port_file);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[64] = {"/usr/bin/python3", TEST_SERVER_SCRIPT, "--port", "0",
                                "--port-file",      port_file,          "--log",  s->log_path};
        int k = 8;
        for (int i = 0; extra && extra[i] && k < 63; i++)
            argv[k++] = extra[i];
        argv[k] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int waited = 0; waited < 10000; waited += 20) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok) {
                snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d/v1", s->port);
                return 0;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "test server exited early; see %s\n", out_file);
            return -1;
        }
        ts_sleep_ms(20);
    }
    fprintf(stderr, "test server did not start within 10 s; see %s\n", out_file);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    s->pid = 0;
    return -1;
}

static inline void test_server_stop(struct test_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    int st;
    for (int i = 0; i < 100; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        ts_sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
}

/* The server's log as a cJSON array of its lines (caller deletes); an empty
 * array when there is no log yet. */
static inline cJSON *test_server_log(const struct test_server *s) {
    cJSON *arr = cJSON_CreateArray();
    FILE *f = fopen(s->log_path, "r");
    if (!f) return arr;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        if (o) cJSON_AddItemToArray(arr, o);
    }
    free(line);
    fclose(f);
    return arr;
}

/* Requests the server received whose tag is `tag` (all when tag is NULL) and,
 * when fault is given, whose fault is that kind ("" = no fault). */
static inline int test_server_count(const struct test_server *s, const char *tag,
                                    const char *fault) {
    cJSON *arr = test_server_log(s);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "tag");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "fault");
        if (tag && !(cJSON_IsString(t) && strcmp(t->valuestring, tag) == 0)) continue;
        if (fault) {
            if (!*fault && !cJSON_IsNull(f)) continue;
            if (*fault && !(cJSON_IsString(f) && strcmp(f->valuestring, fault) == 0)) continue;
        }
        n++;
    }
    cJSON_Delete(arr);
    return n;
}

#endif
