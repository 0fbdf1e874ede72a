#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_err[1024];

const char *xd_last_error(void) { return g_err; }

void xd_err_clear(void) { g_err[0] = 0; }

int xd_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return -1;
}

int xd_err_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    /* build "prefix: old" by hand, truncating at the buffer's end */
    size_t n = strlen(prefix), cap = sizeof g_err - 1;
    if (n > cap) n = cap;
    memcpy(g_err, prefix, n);
    if (n + 2 <= cap) { g_err[n++] = ':'; g_err[n++] = ' '; }
    size_t m = strlen(old);
    if (m > cap - n) m = cap - n;
    memcpy(g_err + n, old, m);
    g_err[n + m] = 0;
    return -1;
}
