/* log.c: stderr logging and the progress line (see log.h). */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;
static int tty_state = -1;

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

bool log_is_tty(void) {
    if (tty_state < 0) tty_state = isatty(2) ? 1 : 0;
    return tty_state == 1;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void stamp(FILE *f) {
    if (log_is_tty()) {
        fputs("autointerp: ", f);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(f, "%s.%03ldZ ", buf, ts.tv_nsec / 1000000);
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if (level > current_level) return;
    static const char *names[] = {"error: ", "warning: ", "", ""};
    stamp(stderr);
    fputs(names[level], stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void progress_begin(struct progress *p, const char *what, const char *unit, double total) {
    p->what = what;
    p->unit = unit;
    p->total = total;
    p->start_s = p->last_s = now_seconds();
    p->plain_interval_s = 30.0;
    p->drawn = false;
}

static void format_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h)
        snprintf(buf, n, "%dh%02dm", h, m);
    else
        snprintf(buf, n, "%dm%02ds", m, sec);
}

static void progress_print(struct progress *p, double done, double t, bool final) {
    double elapsed = t - p->start_s;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 ? (p->total - done) / rate : -1;
    char eta_s[32];
    format_eta(eta_s, sizeof eta_s, final ? elapsed : eta);
    double pct = p->total > 0 ? 100.0 * done / p->total : 0;
    if (log_is_tty()) {
        int width = 30, fill = p->total > 0 ? (int)(width * done / p->total) : 0;
        if (fill > width) fill = width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s [%s] %5.1f%% %.0f %s/s %s %s", p->what, bar, pct, rate, p->unit,
                final ? "took" : "eta", eta_s);
        if (final) fputc('\n', stderr);
        fflush(stderr);
        p->drawn = true;
    } else {
        log_info("%s: %.0f/%.0f %s (%.1f%%), %.0f %s/s, %s %s", p->what, done, p->total, p->unit,
                 pct, rate, p->unit, final ? "took" : "eta", eta_s);
    }
}

void progress_update(struct progress *p, double done) {
    if (current_level < LOG_INFO) return;
    double t = now_seconds();
    double interval = log_is_tty() ? 0.2 : p->plain_interval_s;
    if (t - p->last_s < interval) return;
    p->last_s = t;
    progress_print(p, done, t, false);
}

void progress_end(struct progress *p, double done) {
    if (current_level < LOG_INFO) return;
    progress_print(p, done, now_seconds(), true);
}
