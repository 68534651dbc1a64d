/* log.h: diagnostics on stderr, never stdout.
 *
 * Library code may log progress and warnings through these calls; stdout belongs
 * to the CLI's results. Lines carry an ISO-8601 UTC timestamp when stderr is not a
 * terminal (nightly logs), and a bare "autointerp: " prefix on a terminal.
 * log_set_level is set once by the CLI from --quiet / --verbose.
 */
#ifndef AUTOINTERP_UTIL_LOG_H
#define AUTOINTERP_UTIL_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_is_tty(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* A progress line for long loops: on a terminal it redraws one line with done/total,
 * rate and ETA at most every 200 ms; otherwise it prints a plain log line at most
 * every `plain_interval_s` seconds. Call progress_end once the loop is finished. */
struct progress {
    const char *what;   /* "train local-l2-lam4" */
    const char *unit;   /* "tok" */
    double total;
    double start_s, last_s;
    double plain_interval_s;
    bool drawn;
};
void progress_begin(struct progress *p, const char *what, const char *unit, double total);
void progress_update(struct progress *p, double done);
void progress_end(struct progress *p, double done);

double now_seconds(void); /* monotonic clock */

#endif
