/* Progress of long work, reported through the log callback (core/log.h,
 * XD_LOG_PROGRESS): a status line with a bar for a display redrawn in place,
 * and the same state as a plain log line. At most one report every 0.1 s,
 * plus the done report; the callback decides where they go. */
#ifndef XD_PROGRESS_H
#define XD_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *label;
    int64_t total, first; /* steps, and the step we (re)started at */
    double t0, last;
    int64_t step;         /* of the last update */
    int reported, done;   /* there was an update; the last report was done */
    char extra[192];      /* of the last update */
} xd_progress;

void xd_progress_start(xd_progress *p, const char *label, int64_t first, int64_t total);
/* step = steps done so far; extra = e.g. "loss 3.21 | 12.3k tok/s". Reaching
 * total makes the done report. */
void xd_progress_update(xd_progress *p, int64_t step, const char *extra);
/* Ends the work: repeats the last report as the done one, if there was a
 * report and it was not done already (the work stopped early). */
void xd_progress_end(xd_progress *p);
double xd_now(void);
/* s seconds as "m:ss" or "h:mm:ss"; "--:--" when negative or absurd. */
void xd_fmt_duration(char *buf, size_t n, double s);

#endif
