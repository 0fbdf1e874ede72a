#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static xd_log_fn g_fn;
static void *g_user;

void xd_set_log(xd_log_fn fn, void *user) {
    g_fn = fn;
    g_user = user;
}

int xd_log_enabled(void) { return g_fn != NULL; }

void xd_log(int level, const char *fmt, ...) {
    if (!g_fn) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_fn(g_user, level, msg, NULL);
}

void xd_log_progress(const xd_progress_info *p, const char *msg) {
    if (g_fn) g_fn(g_user, XD_LOG_PROGRESS, msg, p);
}
