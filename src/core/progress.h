/* Progress reporting for long work: a bar redrawn in place on a terminal,
 * plain log lines (at most one every few seconds) otherwise. Writes stderr. */
#ifndef XD_PROGRESS_H
#define XD_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label;
    int64_t total, first; /* steps, and the step we (re)started at */
    double t0, last;
    int tty;
    double min_interval; /* seconds between non-terminal lines */
} xd_progress;

void xd_progress_start(xd_progress *p, const char *label, int64_t first, int64_t total);
/* step = steps done so far; extra = e.g. "loss 3.21 | 12.3k tok/s" */
void xd_progress_update(xd_progress *p, int64_t step, const char *extra);
void xd_progress_end(xd_progress *p);
double xd_now(void);

#endif
