/* A growable text buffer, the one in xdistill (JSON headers and configs, the
 * task generator's JSONL, few-shot contexts, the HTML report's SVG).
 *
 * Zero-initialise it (xd_sbuf b = {0}). b.s is the text, NUL-terminated once
 * anything was added (NULL before: adding "" makes it ""), b.n its length
 * without the NUL. Appends double the allocation as needed (from 256 bytes).
 *
 * Errors latch: when an allocation fails (or vsnprintf reports a formatting
 * error), b.err is set, xd_last_error() says "out of memory (text buffer of N
 * bytes)" (or "formatting failed"), and that append and every later one are
 * no-ops returning -1; the text so far stays readable but is incomplete.
 * Callers that build the text in many small steps can therefore append
 * without checking and test b.err (or xd_sb_take's NULL) once at the end; a
 * caller may also set b.err itself to abandon the text. Never exits, never
 * writes stderr. */
#ifndef XD_STRBUF_H
#define XD_STRBUF_H

#include <stddef.h>

#include "error.h"

typedef struct {
    char *s;       /* the text, NUL-terminated; NULL until something was added */
    size_t n, cap; /* length (without the NUL), allocated bytes */
    int err;       /* an append failed: the text is incomplete */
} xd_sbuf;

/* Appends the n bytes at s (which may contain NULs). 0, or -1 (b.err). */
int xd_sb_add(xd_sbuf *b, const char *s, size_t n);
/* Appends the NUL-terminated s. */
int xd_sb_puts(xd_sbuf *b, const char *s);
/* Appends printf-formatted text. */
int xd_sb_printf(xd_sbuf *b, const char *fmt, ...) XD_PRINTF(2, 3);
/* Empties the text (n = 0, s = "" if allocated), keeps the memory and b.err. */
void xd_sb_clear(xd_sbuf *b);
/* Hands the text over (the caller frees it; "" if nothing was added) and
 * leaves b empty and reusable; NULL if b.err is set (the text is freed) or
 * "" cannot be allocated. */
char *xd_sb_take(xd_sbuf *b);
/* Frees the text; b is empty and reusable. */
void xd_sb_free(xd_sbuf *b);

#endif
