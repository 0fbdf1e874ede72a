/* Percentile-bootstrap confidence intervals over examples (deterministic:
 * the resamples come from xd_rng seeded with `seed`). */
#ifndef XD_EVAL_BOOTSTRAP_H
#define XD_EVAL_BOOTSTRAP_H

#include <stdint.h>

typedef enum {
    XD_BOOT_MEAN = 0, /* Σ num / n            (accuracy: num = 0/1 per example) */
    XD_BOOT_INV_PPL,  /* exp(−Σ num / Σ den)  (num = an example's NLL sum, den = its tokens) */
} xd_boot_stat;

/* The statistic on the examples as they are (no resampling). */
double xd_boot_point(const double *num, const double *den, int n, xd_boot_stat stat);

/* B resamples of n examples drawn with replacement (index = u64 mod n);
 * the statistic of each, sorted; *lo / *hi are the (1−level)/2 and
 * (1+level)/2 quantiles with linear interpolation between order statistics
 * (the "type 7" rule: h = (B−1)·p). den is ignored for XD_BOOT_MEAN.
 * Needs n >= 1 and B >= 1. */
int xd_bootstrap_ci(const double *num, const double *den, int n, xd_boot_stat stat, int B,
                    uint64_t seed, double level, double *lo, double *hi);

/* The same resampling for any statistic of a set of examples: stat(idx, n, ctx) of the
 * resample idx [n] (indices into the examples, with repeats); the point value is stat of
 * 0..n−1. Needs n >= 1 and B >= 1. */
typedef double (*xd_boot_fn)(const int *idx, int n, void *ctx);
int xd_bootstrap_ci_fn(xd_boot_fn stat, void *ctx, int n, int B, uint64_t seed, double level,
                       double *lo, double *hi);

#endif
