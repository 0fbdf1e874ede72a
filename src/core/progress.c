#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double xd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void xd_progress_start(xd_progress *p, const char *label, int64_t first, int64_t total) {
    p->label = label;
    p->first = first;
    p->total = total;
    p->t0 = xd_now();
    p->last = 0;
    p->tty = isatty(fileno(stderr));
    p->min_interval = p->tty ? 0.1 : 5.0;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void xd_progress_update(xd_progress *p, int64_t step, const char *extra) {
    double now = xd_now();
    int done = step >= p->total;
    if (!done && now - p->last < p->min_interval) return;
    p->last = now;
    double el = now - p->t0, rate = step > p->first ? (double)(step - p->first) / el : 0;
    char eta[32], ela[32];
    fmt_time(eta, sizeof eta, rate > 0 ? (double)(p->total - step) / rate : -1);
    fmt_time(ela, sizeof ela, el);
    double frac = p->total > 0 ? (double)step / (double)p->total : 1;
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %s | %s elapsed, ETA %s\033[K", p->label, bar,
                (long long)step, (long long)p->total, extra ? extra : "", ela, eta);
    } else {
        fprintf(stderr, "%s: step %lld/%lld (%.0f%%) %s | elapsed %s, ETA %s\n", p->label,
                (long long)step, (long long)p->total, 100 * frac, extra ? extra : "", ela, eta);
    }
    fflush(stderr);
}

void xd_progress_end(xd_progress *p) {
    if (p->tty) fputc('\n', stderr);
}
