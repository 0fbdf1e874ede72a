/* Win-and-tie (docs/design.md, "Win-and-tie"): is the student as good as the teacher, task by
 * task?
 *
 * Scores are higher-is-better and must be finite and >= 0 (accuracy, exact
 * match, 1/PPL). For task b with student score A_S and teacher score A_T:
 *
 *   1_α(b)   = [A_S >= (1 − α)·A_T]          the student wins or ties at tolerance α
 *   C_α      = mean over tasks of 1_α(b)
 *   lossless = C_0 >= 0.5
 *   α*       = the smallest α in [0, α_max] with C_α >= 0.5 (none if there is none;
 *              α_max = 0.5 by default, the range the report plots)
 *   recovery = A_S / A_T
 *
 * Exact α*: 1_α(b) switches from 0 to 1 at the task's threshold
 *   α_b = max(0, 1 − A_S/A_T)          (α_b = 0 when A_T = 0),
 * and stays 1 for every larger α. So C_α is a step function, C_α >= 0.5 needs
 * k = ceil(n/2) tasks, and α* is the k-th smallest α_b: one of the per-task
 * thresholds, never a grid point.
 *
 * Ties and rounding: the comparison is made as α >= α_b − XD_WT_EPS, with
 * α_b <= XD_WT_EPS snapped to 0. This equals A_S >= (1 − α − ε)·A_T: it
 * absorbs the rounding of A_S/A_T, so that a score that is exactly (1 − α)·A_T
 * in decimal (A_S = 0.6, A_T = 0.8, α = 0.25) counts as a tie, and equal
 * scores tie at α = 0. C_α, α* and the verdict are all computed from the same
 * α_b, so they always agree with each other.
 *
 * Zero teacher score (A_T = 0): 1_α(b) = [A_S >= 0] = 1 for every α (a tie
 * when A_S = 0, a win otherwise); α_b = 0; recovery is undefined: +inf when
 * A_S > 0 and NaN for 0/0 (written as null in JSON, "∞" / "n/a" in reports). */
#ifndef XD_WINTIE_H
#define XD_WINTIE_H

#include <stddef.h>

#define XD_WT_EPS 1e-12
#define XD_WT_ALPHA_MAX 0.5 /* the report's α range [0, 0.5] */
#define XD_WT_GRID 51       /* α = 0, 0.01, ..., 0.5 */

/* α_b: the smallest α at which the task counts as a win or tie (see above).
 * Scores must be finite and >= 0; otherwise returns NaN. */
double xd_wt_threshold(double a_s, double a_t);
/* 1_α(b) (0 or 1); 0 for invalid scores. */
int xd_wt_win(double a_s, double a_t, double alpha);
/* A_S / A_T; +inf for A_T = 0 < A_S, NaN for 0/0 or invalid scores. */
double xd_wt_recovery(double a_s, double a_t);

typedef struct {
    size_t n;            /* tasks */
    double *threshold;   /* [n] α_b */
    double *recovery;    /* [n] A_S / A_T */
    int *win0;           /* [n] 1_0(b) */
    int wins0;           /* Σ 1_0(b) */
    double c0;           /* C_0 */
    int lossless;        /* C_0 >= 0.5 */
    double alpha_max;    /* α range searched and plotted: [0, alpha_max] */
    int has_alpha_star;  /* α* <= alpha_max exists */
    double alpha_star;   /* α* (NaN when none) */
    double alpha_needed; /* the k-th smallest α_b over all α (<= 1): α* without the range limit */
    int n_grid;          /* grid points over [0, alpha_max] */
    double *grid_alpha;  /* [n_grid] i·alpha_max/(n_grid−1): both ends exact */
    double *grid_c;      /* [n_grid] C_α there */
} xd_wintie;

/* Computes everything above for n >= 1 tasks. alpha_max in (0, 1]; n_grid >= 2.
 * Fails (xd_last_error names the task index and value) on a score that is not
 * finite or is negative. */
int xd_wintie_compute(xd_wintie *w, const double *a_s, const double *a_t, size_t n,
                      double alpha_max, int n_grid);
/* C_α for any α >= 0, from the thresholds. */
double xd_wintie_c(const xd_wintie *w, double alpha);
/* The verdict line, e.g. "LOSSLESS: C_0 = 0.625 ≥ 0.5 (α* = 0)" or
 * "NOT LOSSLESS: C_0 = 0.25; α* = 0.18" (UTF-8). */
void xd_wintie_verdict(const xd_wintie *w, char *buf, size_t cap);
void xd_wintie_free(xd_wintie *w);

#endif
