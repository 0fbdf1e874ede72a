/* The growable text buffer (strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for `extra` more bytes and the NUL. */
static int reserve(xd_sbuf *b, size_t extra) {
    if (b->err) return -1;
    if (extra < b->cap && b->n < b->cap - extra) return 0; /* n + extra + 1 <= cap */
    if (extra > ((size_t)-1) / 2 - b->n) {
        b->err = 1;
        return xd_err("out of memory (text buffer of more than %zu bytes)", ((size_t)-1) / 2);
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->err = 1;
        return xd_err("out of memory (text buffer of %zu bytes)", cap);
    }
    b->s = s;
    b->cap = cap;
    return 0;
}

int xd_sb_add(xd_sbuf *b, const char *s, size_t n) {
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

int xd_sb_puts(xd_sbuf *b, const char *s) { return xd_sb_add(b, s, strlen(s)); }

int xd_sb_printf(xd_sbuf *b, const char *fmt, ...) {
    if (b->err) return -1;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->err = 1;
        return xd_err("formatting failed");
    }
    if (reserve(b, (size_t)k)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return 0;
}

void xd_sb_clear(xd_sbuf *b) {
    b->n = 0;
    if (b->s) b->s[0] = 0;
}

char *xd_sb_take(xd_sbuf *b) {
    char *s = b->s;
    if (b->err) {
        free(s);
        s = NULL;
    } else if (!s) {
        s = calloc(1, 1);
    }
    memset(b, 0, sizeof *b);
    return s;
}

void xd_sb_free(xd_sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}
