/* DiffPruning's mask math (hard_concrete.h). Elementwise loops, threaded over OpenMP for
 * long vectors (each element's value does not depend on the split); the L0 sum adds fixed
 * blocks' double sums in block order, so it does not depend on the thread count either. */
#include "hard_concrete.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

#define PAR_MIN 65536     /* shorter vectors stay on one thread */
#define L0_BLOCK 65536

void xd_hc_sample_forward(float *z, float *s, const float *log_alpha, const float *u, int64_t n,
                          float l, float r) {
    /* σ(log u − log(1−u) + log α) = u / (u + (1−u)·e^(−log α)): one exp, the same value */
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        double ui = u[i];
        float si = (float)(ui / (ui + (1.0 - ui) * exp(-(double)log_alpha[i])));
        float sb = si * (r - l) + l;
        s[i] = si;
        z[i] = sb < 0.0f ? 0.0f : sb > 1.0f ? 1.0f : sb;
    }
}

void xd_hc_sample_backward(float *dlog_alpha, const float *dz, const float *s, int64_t n, float l,
                           float r) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float sb = s[i] * (r - l) + l; /* the forward's s̄, recomputed bit for bit */
        if (sb >= 0.0f && sb <= 1.0f) dlog_alpha[i] += dz[i] * (r - l) * s[i] * (1.0f - s[i]);
    }
}

void xd_hc_eval_mask(float *z, const float *log_alpha, int64_t n, float l, float r) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float sb = (float)sigmoid_d(log_alpha[i]) * (r - l) + l;
        z[i] = sb < 0.0f ? 0.0f : sb > 1.0f ? 1.0f : sb;
    }
}

double xd_hc_expected_l0(const float *log_alpha, int64_t n, float l, float r, float *dlog_alpha,
                         float scale) {
    double shift = log(-(double)l / (double)r), sum = 0;
    int64_t nb = (n + L0_BLOCK - 1) / L0_BLOCK;
    double *part = nb > 1 ? malloc((size_t)nb * sizeof *part) : NULL;
    if (nb > 1 && part) {
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t i1 = (b + 1) * L0_BLOCK < n ? (b + 1) * L0_BLOCK : n;
            double ps = 0;
            for (int64_t i = b * L0_BLOCK; i < i1; i++) {
                double p = sigmoid_d((double)log_alpha[i] - shift);
                ps += p;
                if (dlog_alpha) dlog_alpha[i] += (float)(scale * p * (1.0 - p));
            }
            part[b] = ps;
        }
        for (int64_t b = 0; b < nb; b++) sum += part[b];
        free(part);
        return sum;
    }
    /* one block (or no memory for the partial sums): the same blocks, serially */
    double ps = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = sigmoid_d((double)log_alpha[i] - shift);
        ps += p;
        if (dlog_alpha) dlog_alpha[i] += (float)(scale * p * (1.0 - p));
        if ((i + 1) % L0_BLOCK == 0 || i + 1 == n) {
            sum += ps;
            ps = 0;
        }
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

/* The k-th largest (k from 1) of v [n] by quickselect (median-of-three Hoare partitions);
 * v is reordered. */
static float kth_largest(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        float a = v[lo], b = v[mid], c = v[hi];
        float pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        /* now v[lo..j] >= pivot >= v[i..hi], and v[j+1..i-1] == pivot */
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return pivot;
    }
    return v[want];
}

int64_t xd_magnitude_prune(uint8_t *keep, const float *w, int64_t n, double share) {
    if (n < 1) return xd_err("magnitude pruning: %lld values; expected at least 1", (long long)n);
    if (!(share > 0.0 && share <= 1.0))
        return xd_err("sparsity: the share of non-zeros is %g; expected a value in (0, 1]", share);
    int64_t k = (int64_t)llround(share * (double)n);
    if (k < 1) k = 1;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return xd_err("magnitude pruning: out of memory for %lld values", (long long)n);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(w[i]);
    float t = kth_largest(v, n, k);
    free(v);
    /* every magnitude above the k-th, then the ties at it from the lowest index on */
    int64_t above = 0;
    for (int64_t i = 0; i < n; i++) above += fabsf(w[i]) > t;
    int64_t ties = k - above;
    for (int64_t i = 0; i < n; i++) {
        float m = fabsf(w[i]);
        keep[i] = m > t || (m == t && ties > 0);
        if (m == t && ties > 0) ties--;
    }
    return k;
}
