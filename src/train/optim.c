#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

int xd_adamw_init(xd_adamw *o, size_t n, float beta1, float beta2, float eps) {
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->n = n;
    o->t = 0;
    o->m = calloc(n, sizeof(float));
    o->v = calloc(n, sizeof(float));
    if (!o->m || !o->v) {
        xd_adamw_free(o);
        return xd_err("AdamW: out of memory for %zu moments", n);
    }
    return 0;
}

void xd_adamw_free(xd_adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void xd_adamw_begin_step(xd_adamw *o) { o->t++; }

/* torch.optim.AdamW (single-tensor path) on the gradient g' = gscale·g
 * (gscale: the grad-norm clip coefficient, folded in here instead of a
 * separate pass over the gradients; the product is rounded exactly as an
 * in-place g *= gscale would be):
 *   p ← p·(1 − lr·wd)
 *   m ← β1·m + (1−β1)·g'         v ← β2·v + (1−β2)·g'²
 *   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps)
 * The library is built with -fno-math-errno, so sqrtf is the vector
 * instruction and this loop vectorises. */
void xd_adamw_update(xd_adamw *o, float *p, const float *g, size_t off, size_t n, float lr,
                     float wd, float gscale) {
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    double bc1 = 1.0 - pow(b1, (double)o->t), bc2 = 1.0 - pow(b2, (double)o->t);
    float step = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), decay = (float)(1.0 - (double)lr * wd);
    float *m = o->m + off, *v = o->v + off;
    p += off;
    g += off;
    int scaled = gscale != 1.0f;
#pragma omp parallel for simd if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = scaled ? g[i] * gscale : g[i];
        p[i] *= decay;
        m[i] += (1.0f - b1) * (gi - m[i]);
        v[i] = v[i] * b2 + (1.0f - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

float xd_lr_schedule(int64_t s, int64_t total, int64_t warmup, float lr_max, float lr_min) {
    if (s < warmup) return lr_max * (float)(s + 1) / (float)warmup;
    int64_t span = total - warmup;
    double prog = span > 0 ? (double)(s - warmup) / (double)span : 1.0;
    if (prog > 1) prog = 1;
    return (float)(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(M_PI * prog)));
}

/* Deterministic: fixed chunks summed in order (an OpenMP reduction may
 * combine thread results in any order, which would break exact resume).
 * Within a chunk, 16 independent double accumulators (lane j sums the
 * elements i ≡ j mod 16) break the add latency chain so that the loop
 * vectorises; they are combined in a fixed order. */
double xd_sumsq(const float *g, size_t n) {
    enum { CHUNKS = 64, LANES = 16 };
    double part[CHUNKS] = {0};
    size_t per = (n + CHUNKS - 1) / CHUNKS;
    per = (per + LANES - 1) / LANES * LANES;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int c = 0; c < CHUNKS; c++) {
        size_t lo = (size_t)c * per, hi = lo + per < n ? lo + per : n;
        if (lo >= hi) continue;
        double acc[LANES] = {0};
        size_t i = lo;
        for (; i + LANES <= hi; i += LANES)
            for (int j = 0; j < LANES; j++) acc[j] += (double)g[i + j] * g[i + j];
        for (int j = 0; i < hi; i++, j++) acc[j] += (double)g[i] * g[i];
        double s = 0;
        for (int j = 0; j < LANES; j++) s += acc[j];
        part[c] = s;
    }
    double s = 0;
    for (int c = 0; c < CHUNKS; c++) s += part[c];
    return s;
}

float xd_clip_coef(double norm, float max_norm) {
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}
