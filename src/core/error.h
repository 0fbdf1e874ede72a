/* Internal error helpers: set the thread's error text and return -1 / NULL. */
#ifndef XD_ERROR_H
#define XD_ERROR_H

#include "xdistill.h"

#if defined(__GNUC__)
#define XD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define XD_PRINTF(a, b)
#endif

/* Sets the error text; always returns -1 so callers can `return xd_err(...)`. */
int xd_err(const char *fmt, ...) XD_PRINTF(1, 2);
/* Prefixes the current error text with more context ("while loading X: ..."). */
int xd_err_prefix(const char *fmt, ...) XD_PRINTF(1, 2);
void xd_err_clear(void);

#endif
