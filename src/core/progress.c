#include "progress.h"

#include <stdio.h>
#include <time.h>

#include "core/log.h"

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
    p->step = first;
    p->reported = p->done = 0;
    p->extra[0] = 0;
}

void xd_fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void report(xd_progress *p, double now, int done) {
    int64_t step = p->step;
    double el = now - p->t0, rate = step > p->first ? (double)(step - p->first) / el : 0;
    double eta = rate > 0 ? (double)(p->total - step) / rate : -1;
    char eta_s[32], el_s[32], bar[31], status[512], msg[512];
    xd_fmt_duration(eta_s, sizeof eta_s, eta);
    xd_fmt_duration(el_s, sizeof el_s, el);
    double frac = p->total > 0 ? (double)step / (double)p->total : 1;
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    snprintf(status, sizeof status, "%s [%s] %lld/%lld %s | %s elapsed, ETA %s", p->label, bar,
             (long long)step, (long long)p->total, p->extra, el_s, eta_s);
    snprintf(msg, sizeof msg, "%s: step %lld/%lld (%.0f%%) %s | elapsed %s, ETA %s", p->label,
             (long long)step, (long long)p->total, 100 * frac, p->extra, el_s, eta_s);
    xd_progress_info info = {p->label, step, p->total, p->first, el, eta, p->extra, status, done};
    p->done = done;
    xd_log_progress(&info, msg);
}

void xd_progress_update(xd_progress *p, int64_t step, const char *extra) {
    if (!xd_log_enabled()) return;
    double now = xd_now();
    int done = step >= p->total;
    p->step = step; /* kept for xd_progress_end even when not reported now */
    snprintf(p->extra, sizeof p->extra, "%s", extra ? extra : "");
    p->reported = 1;
    if (!done && now - p->last < 0.1) return;
    p->last = now;
    report(p, now, done);
}

void xd_progress_end(xd_progress *p) {
    if (p->reported && !p->done && xd_log_enabled()) report(p, xd_now(), 1);
}
