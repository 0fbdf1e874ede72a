/* Win-and-tie arithmetic (wintie.h). */
#include "wintie.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int valid(double a) { return isfinite(a) && a >= 0; }

double xd_wt_threshold(double a_s, double a_t) {
    if (!valid(a_s) || !valid(a_t)) return NAN;
    if (a_t == 0) return 0;
    double t = 1 - a_s / a_t;
    return t <= XD_WT_EPS ? 0 : t;
}

static int reached(double alpha, double threshold) {
    return alpha >= threshold - XD_WT_EPS;
}

int xd_wt_win(double a_s, double a_t, double alpha) {
    double t = xd_wt_threshold(a_s, a_t);
    return !isnan(t) && reached(alpha, t);
}

double xd_wt_recovery(double a_s, double a_t) {
    if (!valid(a_s) || !valid(a_t)) return NAN;
    if (a_t == 0) return a_s > 0 ? INFINITY : NAN;
    return a_s / a_t;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double xd_wintie_c(const xd_wintie *w, double alpha) {
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) k += (size_t)reached(alpha, w->threshold[i]);
    return w->n ? (double)k / (double)w->n : NAN;
}

int xd_wintie_compute(xd_wintie *w, const double *a_s, const double *a_t, size_t n,
                      double alpha_max, int n_grid) {
    memset(w, 0, sizeof *w);
    if (n == 0) return xd_err("win-and-tie: no tasks to compare");
    if (!(alpha_max > 0 && alpha_max <= 1))
        return xd_err("win-and-tie: alpha_max %g is not in (0, 1]", alpha_max);
    if (n_grid < 2) return xd_err("win-and-tie: the α grid needs at least 2 points, got %d", n_grid);
    for (size_t i = 0; i < n; i++) {
        if (!valid(a_s[i]))
            return xd_err("win-and-tie: task %zu: student score %g is not a finite score >= 0 "
                          "(higher is better)", i, a_s[i]);
        if (!valid(a_t[i]))
            return xd_err("win-and-tie: task %zu: teacher score %g is not a finite score >= 0 "
                          "(higher is better)", i, a_t[i]);
    }
    w->n = n;
    w->n_grid = n_grid;
    w->alpha_max = alpha_max;
    w->threshold = malloc(n * sizeof *w->threshold);
    w->recovery = malloc(n * sizeof *w->recovery);
    w->win0 = malloc(n * sizeof *w->win0);
    w->grid_alpha = malloc((size_t)n_grid * sizeof *w->grid_alpha);
    w->grid_c = malloc((size_t)n_grid * sizeof *w->grid_c);
    double *sorted = malloc(n * sizeof *sorted);
    if (!w->threshold || !w->recovery || !w->win0 || !w->grid_alpha || !w->grid_c || !sorted) {
        free(sorted);
        xd_wintie_free(w);
        return xd_err("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        w->threshold[i] = sorted[i] = xd_wt_threshold(a_s[i], a_t[i]);
        w->recovery[i] = xd_wt_recovery(a_s[i], a_t[i]);
        w->win0[i] = reached(0, w->threshold[i]);
        w->wins0 += w->win0[i];
    }
    w->c0 = (double)w->wins0 / (double)n;
    w->lossless = 2 * (size_t)w->wins0 >= n;
    qsort(sorted, n, sizeof *sorted, cmp_double);
    /* C_α >= 0.5 ⇔ at least k = ceil(n/2) tasks reached ⇔ α >= the k-th smallest α_b */
    w->alpha_needed = sorted[(n + 1) / 2 - 1];
    free(sorted);
    w->has_alpha_star = reached(alpha_max, w->alpha_needed);
    w->alpha_star = w->has_alpha_star ? w->alpha_needed : NAN;
    for (int g = 0; g < n_grid; g++) {
        w->grid_alpha[g] = g == n_grid - 1 ? alpha_max : alpha_max * g / (n_grid - 1);
        w->grid_c[g] = xd_wintie_c(w, w->grid_alpha[g]);
    }
    return 0;
}

void xd_wintie_verdict(const xd_wintie *w, char *buf, size_t cap) {
    char c0[32], as[96];
    snprintf(c0, sizeof c0, "%.3g", w->c0);
    if (w->has_alpha_star) snprintf(as, sizeof as, "α* = %.3g", w->alpha_star);
    else
        snprintf(as, sizeof as, "α* none (C_α < 0.5 for every α ≤ %g; %.3g would be needed)",
                 w->alpha_max, w->alpha_needed);
    if (w->lossless)
        snprintf(buf, cap, "LOSSLESS: C_0 = %s ≥ 0.5 (%d of %zu tasks won or tied; %s)", c0, w->wins0,
                 w->n, as);
    else
        snprintf(buf, cap, "NOT LOSSLESS: C_0 = %s < 0.5 (%d of %zu tasks won or tied); %s", c0,
                 w->wins0, w->n, as);
}

void xd_wintie_free(xd_wintie *w) {
    free(w->threshold);
    free(w->recovery);
    free(w->win0);
    free(w->grid_alpha);
    free(w->grid_c);
    memset(w, 0, sizeof *w);
}
