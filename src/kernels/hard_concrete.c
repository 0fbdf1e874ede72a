/* DiffPruning's mask math (hard_concrete.h). Elementwise loops; the L0 sum is a
 * serial double sum (a fixed order, whatever the thread count). */
#include "hard_concrete.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

void xd_hc_sample_forward(float *z, float *s, const float *log_alpha, const float *u, int64_t n,
                          float l, float r) {
    for (int64_t i = 0; i < n; i++) {
        double ui = u[i];
        float si = (float)sigmoid_d(log(ui) - log(1.0 - ui) + (double)log_alpha[i]);
        float sb = si * (r - l) + l;
        s[i] = si;
        z[i] = sb < 0.0f ? 0.0f : sb > 1.0f ? 1.0f : sb;
    }
}

void xd_hc_sample_backward(float *dlog_alpha, const float *dz, const float *s, int64_t n, float l,
                           float r) {
    for (int64_t i = 0; i < n; i++) {
        float sb = s[i] * (r - l) + l; /* the forward's s̄, recomputed bit for bit */
        if (sb >= 0.0f && sb <= 1.0f) dlog_alpha[i] += dz[i] * (r - l) * s[i] * (1.0f - s[i]);
    }
}

void xd_hc_eval_mask(float *z, const float *log_alpha, int64_t n, float l, float r) {
    for (int64_t i = 0; i < n; i++) {
        float sb = (float)sigmoid_d(log_alpha[i]) * (r - l) + l;
        z[i] = sb < 0.0f ? 0.0f : sb > 1.0f ? 1.0f : sb;
    }
}

double xd_hc_expected_l0(const float *log_alpha, int64_t n, float l, float r, float *dlog_alpha,
                         float scale) {
    double shift = log(-(double)l / (double)r), sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = sigmoid_d((double)log_alpha[i] - shift);
        sum += p;
        if (dlog_alpha) dlog_alpha[i] += (float)(scale * p * (1.0 - p));
    }
    return sum;
}

void xd_hc_uniforms(float *u, int64_t n, uint64_t seed, uint64_t stream) {
    xd_rng g;
    xd_rng_seed(&g, seed);
    for (uint64_t k = 0; k < stream; k++) xd_rng_u64(&g);
    for (int64_t i = 0; i < n; i++)
        u[i] = (float)(XD_HC_EPS + (1.0 - 2.0 * XD_HC_EPS) * xd_rng_uniform(&g));
}

void xd_grad_reverse_backward(float *dx, const float *dy, int64_t n, float lambda) {
    for (int64_t i = 0; i < n; i++) dx[i] += -lambda * dy[i];
}

typedef struct {
    float mag;
    int64_t idx;
} mag_idx;

/* Descending |w|, then ascending index: a total order, so the kept set is unique. */
static int by_magnitude(const void *a, const void *b) {
    const mag_idx *x = a, *y = b;
    if (x->mag != y->mag) return x->mag > y->mag ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int64_t xd_magnitude_prune(uint8_t *keep, const float *w, int64_t n, double share) {
    if (n < 1) return xd_err("magnitude pruning: %lld values; expected at least 1", (long long)n);
    if (!(share > 0.0 && share <= 1.0))
        return xd_err("sparsity: the share of non-zeros is %g; expected a value in (0, 1]", share);
    int64_t k = (int64_t)llround(share * (double)n);
    if (k < 1) k = 1;
    mag_idx *v = malloc((size_t)n * sizeof *v);
    if (!v) return xd_err("magnitude pruning: out of memory for %lld values", (long long)n);
    for (int64_t i = 0; i < n; i++) v[i] = (mag_idx){fabsf(w[i]), i};
    qsort(v, (size_t)n, sizeof *v, by_magnitude);
    memset(keep, 0, (size_t)n);
    for (int64_t i = 0; i < k; i++) keep[v[i].idx] = 1;
    free(v);
    return k;
}
