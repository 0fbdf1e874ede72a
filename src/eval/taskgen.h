/* The built-in evaluation suite: `xdistill tasks make` (docs/tasks.md).
 *
 * Writes a suite directory (suite.json + one JSONL file per task) from real
 * text found on the machine (WordNet, the King James Bible, Debian's license
 * texts) and from synthetic long-context probes drawn from a seeded RNG. The
 * output is a function of (seed, window, n, the source files) only: the same
 * inputs give byte-identical files. */
#ifndef XD_TASKGEN_H
#define XD_TASKGEN_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    int window;          /* the student's attention window W, in tokens (>= 1) */
    int n;               /* examples per task (>= 1) */
    const char *sources; /* NULL: the system's files; else a directory laid out
                            as in docs/tasks.md (kjv.txt, wordnet/, licenses/) */
} xd_taskgen_opts;

/* What was written for one task (as in suite.json). */
typedef struct {
    const char *name, *file, *type;
    int examples;
    double approx_tokens; /* mean approximate tokens per example */
    double chance;
    int long_context;
} xd_taskgen_info;

#define XD_TASKGEN_MAX_TASKS 32
#define XD_TASKGEN_MAX_WINDOW 16384
#define XD_TASKGEN_MAX_N 1000

/* seed 1, window 64, n 40, the system's sources */
void xd_taskgen_defaults(xd_taskgen_opts *o);

/* Makes the suite in out_dir (replaced atomically; an existing directory that
 * is not a suite, i.e. non-empty without suite.json, is refused). info, if
 * not NULL, receives one entry per task (XD_TASKGEN_MAX_TASKS at most) and
 * *n_info their number. Returns 0, or -1 with the error text set
 * (xd_last_error). */
int xd_tasks_make(const char *out_dir, const xd_taskgen_opts *o, xd_taskgen_info *info,
                  int *n_info);

#endif
