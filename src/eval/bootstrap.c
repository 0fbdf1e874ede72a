#include "eval/bootstrap.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"

static double stat_of(double sn, double sd, int n, xd_boot_stat stat) {
    if (stat == XD_BOOT_MEAN) return sn / (double)n;
    return exp(-sn / sd);
}

double xd_boot_point(const double *num, const double *den, int n, xd_boot_stat stat) {
    double sn = 0, sd = 0;
    for (int i = 0; i < n; i++) {
        sn += num[i];
        if (den) sd += den[i];
    }
    return stat_of(sn, sd, n, stat);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *x, int B, double p) {
    double h = (double)(B - 1) * p;
    int i = (int)floor(h);
    if (i >= B - 1) return x[B - 1];
    if (i < 0) return x[0];
    return x[i] + (h - (double)i) * (x[i + 1] - x[i]);
}

static int check_args(int n, int B, double level) {
    if (n < 1 || B < 1 || !(level > 0 && level < 1))
        return xd_err("bootstrap: needs n >= 1, B >= 1 and 0 < level < 1 (n %d, B %d, level %g)",
                      n, B, level);
    return 0;
}

/* Sorts the B resampled statistics and reads the two quantiles. */
static void interval(double *s, int B, double level, double *lo, double *hi) {
    qsort(s, (size_t)B, sizeof *s, cmp_double);
    *lo = quantile(s, B, (1 - level) / 2);
    *hi = quantile(s, B, (1 + level) / 2);
}

int xd_bootstrap_ci_fn(xd_boot_fn stat, void *ctx, int n, int B, uint64_t seed, double level,
                       double *lo, double *hi) {
    if (check_args(n, B, level)) return -1;
    double *s = malloc((size_t)B * sizeof *s);
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!s || !idx) {
        free(s), free(idx);
        return xd_err("bootstrap: out of memory");
    }
    xd_rng r;
    xd_rng_seed(&r, seed);
    for (int b = 0; b < B; b++) {
        for (int k = 0; k < n; k++) idx[k] = (int)(xd_rng_u64(&r) % (uint64_t)n);
        s[b] = stat(idx, n, ctx);
    }
    interval(s, B, level, lo, hi);
    free(s), free(idx);
    return 0;
}

int xd_bootstrap_ci(const double *num, const double *den, int n, xd_boot_stat stat, int B,
                    uint64_t seed, double level, double *lo, double *hi) {
    if (check_args(n, B, level)) return -1;
    if (stat != XD_BOOT_MEAN && !den) return xd_err("bootstrap: this statistic needs den");
    double *s = malloc((size_t)B * sizeof *s);
    if (!s) return xd_err("bootstrap: out of memory");
    xd_rng r;
    xd_rng_seed(&r, seed);
    for (int b = 0; b < B; b++) {
        double sn = 0, sd = 0;
        for (int k = 0; k < n; k++) {
            int i = (int)(xd_rng_u64(&r) % (uint64_t)n);
            sn += num[i];
            if (stat != XD_BOOT_MEAN) sd += den[i];
        }
        s[b] = stat_of(sn, sd, n, stat);
    }
    interval(s, B, level, lo, hi);
    free(s);
    return 0;
}
