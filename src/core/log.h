/* Internal logging: every message the library has for a person goes through
 * here to the callback of xd_set_log (xdistill.h), or nowhere. Library code
 * never writes stdout or stderr itself (tests/test_no_stdio.c checks). */
#ifndef XD_LOG_H
#define XD_LOG_H

#include "core/error.h"
#include "xdistill.h"

/* 1 if a callback is installed (skip building a message nobody reads). */
int xd_log_enabled(void);
/* Formats one message (no trailing newline) for level XD_LOG_INFO / XD_LOG_WARN. */
void xd_log(int level, const char *fmt, ...) XD_PRINTF(2, 3);
/* A progress report: msg is its plain log line (no trailing newline). */
void xd_log_progress(const xd_progress_info *p, const char *msg);

#endif
