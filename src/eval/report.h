/* `xdistill compare`: teacher and student results side by side, the
 * win-and-tie verdict (wintie.h), WINTIE.json and a self-contained HTML report
 * (inline SVG plots, no scripts or external resources: it works offline).
 * Formats: docs/compare.md.
 *
 * Inputs:
 *   - results files written by `xdistill eval` ({"xdistill_results":1, ...});
 *   - training logs (JSON lines: {"step":N,"loss":x,"val_loss":x,"ce":x,"kl":x,
 *     "layer_mse":[...],...}), any number;
 *   - a cost ledger ({"stages":[{"name":"convert","tokens":N,"seconds":s},...]}).
 * Every loader checks types and names the file, the field and what was
 * expected in xd_last_error(). */
#ifndef XD_REPORT_H
#define XD_REPORT_H

#include <stddef.h>

#include "eval/wintie.h"

/* ---- results files -------------------------------------------------------- */

typedef struct {
    char *name, *type, *metric;     /* type / metric: "" when absent */
    double score;                   /* higher is better, finite, >= 0 */
    double ci_low, ci_high;         /* bootstrap CI; NaN when absent */
    long long n;                    /* examples; -1 when absent */
    double seconds;                 /* NaN when absent */
    double chance;                  /* NaN when absent or null */
    double acc_norm, ppl;           /* NaN when absent */
    int long_context;               /* 0 when absent */
} xd_cmp_task;

typedef struct {
    char *path;                     /* the file it was read from */
    char *model, *suite, *suite_dir;/* "" when absent (suite is required) */
    int student;                    /* -1 when absent */
    long long window;               /* -1 when absent or null */
    double seconds;                 /* NaN when absent */
    void *settings;                 /* json_t object (jansson), owned */
    xd_cmp_task *tasks;
    size_t n_tasks;
} xd_cmp_results;

int xd_cmp_results_load(xd_cmp_results *r, const char *path);
void xd_cmp_results_free(xd_cmp_results *r);
/* Index of the task named name, or -1. */
long xd_cmp_results_find(const xd_cmp_results *r, const char *name);
/* 0 when a and b can be compared: same suite, same settings (every key of
 * either object, compared as JSON values), the same set of task names with the
 * same type and metric. Otherwise -1, and the error names both files, the
 * field (e.g. "settings.fewshot", "suite", "tasks") and both values. */
int xd_cmp_results_check(const xd_cmp_results *a, const xd_cmp_results *b);

/* ---- training logs -------------------------------------------------------- */

typedef struct {
    char name[64];                  /* "loss", "val_loss", "layer_mse[3]", ... */
    double *x, *y;                  /* step, value */
    size_t n, cap;
} xd_cmp_series;

typedef struct {
    char *path;
    xd_cmp_series *series;
    size_t n_series;
    size_t n_lines;                 /* records read */
} xd_cmp_log;

/* Reads a JSON-lines log; every non-blank line must be an object with a
 * numeric "step". Each other numeric field becomes a series; each array of
 * numbers "k" becomes the series "k[0]", "k[1]", ... */
int xd_cmp_log_load(xd_cmp_log *l, const char *path);
void xd_cmp_log_free(xd_cmp_log *l);
const xd_cmp_series *xd_cmp_log_series(const xd_cmp_log *l, const char *name);

/* ---- cost ledger ---------------------------------------------------------- */

typedef struct {
    char *name;
    double tokens;                  /* NaN when absent */
    double seconds;                 /* NaN when absent */
} xd_cmp_stage;

typedef struct {
    char *path;
    xd_cmp_stage *stages;
    size_t n_stages;
} xd_cmp_ledger;

int xd_cmp_ledger_load(xd_cmp_ledger *g, const char *path);
void xd_cmp_ledger_free(xd_cmp_ledger *g);

/* ---- the comparison ------------------------------------------------------- */

typedef struct {
    const xd_cmp_results *teacher, *student;
    const xd_cmp_results *swa;       /* SWA-only baseline, or NULL */
    const xd_cmp_log *logs;          /* n_logs of them (may be 0) */
    size_t n_logs;
    const xd_cmp_ledger *ledger;     /* or NULL */
    /* computed by xd_cmp_build, in the teacher's task order: */
    size_t n;
    size_t *si, *wi;                 /* index of task i in student / swa */
    xd_wintie wt;                    /* student vs teacher */
    xd_wintie swa_wt;                /* SWA baseline vs teacher (when swa) */
    char verdict[512];               /* xd_wintie_verdict of wt */
} xd_cmp;

/* Checks that the files are comparable (xd_cmp_results_check: student and
 * SWA each against the teacher; a teacher file marked "student":true beside a
 * student file marked false is refused as swapped) and computes win-and-tie
 * over [0, XD_WT_ALPHA_MAX] on XD_WT_GRID points. The inputs are borrowed. */
int xd_cmp_build(xd_cmp *c, const xd_cmp_results *teacher, const xd_cmp_results *student,
                 const xd_cmp_results *swa, const xd_cmp_log *logs, size_t n_logs,
                 const xd_cmp_ledger *ledger);
void xd_cmp_free(xd_cmp *c);

/* WINTIE.json text (docs/compare.md), malloc'ed; NULL on failure. */
char *xd_cmp_wintie_json(const xd_cmp *c);

/* Colours of the teacher, student and SWA-only bars (and of the student's
 * C_α curve and training loss). */
#define XD_REPORT_C_TEACHER 0x4c72b0u
#define XD_REPORT_C_STUDENT 0xdd8452u
#define XD_REPORT_C_SWA 0x55a868u

/* What the report's plots are, for tests that look at a rendering: each plot
 * fills its plotting area with its own background colour. */
#define XD_REPORT_MAX_PLOTS 64
typedef struct {
    int n;
    struct {
        char title[160];
        unsigned bg;                 /* 0xRRGGBB, unique per plot */
    } plot[XD_REPORT_MAX_PLOTS];
} xd_report_plots;

/* The HTML report, malloc'ed; NULL on failure. plots may be NULL. */
char *xd_cmp_report_html(const xd_cmp *c, xd_report_plots *plots);

/* Writes text to path atomically (io/atomic.h); errors name the path. */
int xd_cmp_write_text(const char *path, const char *text);

/* The reports' style sheet (inline CSS), shared by the HTML pages xdistill writes. */
extern const char xd_report_css[];

#endif
