/* The gated delta rule (delta.h): forward with chunk checkpoints, backward by
 * recomputing each chunk, and the one-token step. */
#include "delta.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "vmath.h"

#define NORM_EPS 1e-6 /* inside the square root of ‖x‖ */

/* 1/‖x‖ of n floats, summed in double in order */
static float inv_norm(const float *x, int n) {
    double s = NORM_EPS;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(s));
}

static int64_t n_chunks(int64_t T, int L) { return T > 0 ? (T + L - 1) / L : 1; }

int64_t xd_delta_cache_floats(int64_t T, const xd_mlstm_cfg *cfg) {
    return n_chunks(T, cfg->chunk) * cfg->H * cfg->dphi * cfg->dv + 2 * T * cfg->H;
}

/* One token of one head: M [dphi][dv] ← α·M + k̂ rᵀ with r = β(v − α·Mᵀk̂), then
 * h = Mᵀq̂ (q̂ = q·rq, k̂ = k·rk). u and r [dv] are scratch; u keeps Mᵀk̂ (the backward
 * needs it). The one definition the forward, the step and the backward's recompute share. */
static void token_update(float *M, float *h, float *u, float *r, const float *q, float rq,
                         const float *k, float rk, const float *v, float a, float b, int dphi,
                         int dv) {
    for (int i = 0; i < dv; i++) u[i] = 0;
    for (int j = 0; j < dphi; j++) {
        float kj = k[j] * rk;
        const float *Mj = M + (size_t)j * dv;
        for (int i = 0; i < dv; i++) u[i] += kj * Mj[i];
    }
    for (int i = 0; i < dv; i++) r[i] = b * (v[i] - a * u[i]);
    if (h)
        for (int i = 0; i < dv; i++) h[i] = 0;
    for (int j = 0; j < dphi; j++) {
        float kj = k[j] * rk, qj = q[j] * rq;
        float *Mj = M + (size_t)j * dv;
        for (int i = 0; i < dv; i++) Mj[i] = a * Mj[i] + kj * r[i];
        if (h)
            for (int i = 0; i < dv; i++) h[i] += qj * Mj[i];
    }
}

static int doc_reset(const xd_mlstm_in *in, int64_t t) {
    return t > 0 && in->doc_start && in->doc_start[t] == t;
}

int xd_delta_step(float *h, float *S, const float *q, const float *k, const float *v,
                  const float *ig, const float *fg, int reset, const xd_mlstm_cfg *cfg) {
    int H = cfg->H, dphi = cfg->dphi, dv = cfg->dv;
    size_t csz = (size_t)dphi * dv;
    float ur[2 * 512], *u = ur, *r = ur + 512, *heap = NULL;
    if (dv > 512) { /* no head is this wide in practice; stay correct anyway */
        heap = malloc(2 * (size_t)dv * sizeof(float));
        if (!heap) return xd_err("delta rule step: out of memory for d_v = %d", dv);
        u = heap, r = heap + dv;
    }
    for (int hh = 0; hh < H; hh++) {
        float *M = S + hh * csz;
        if (reset) memset(M, 0, csz * sizeof(float));
        const float *qh = q + (size_t)hh * dphi, *kh = k + (size_t)hh * dphi;
        token_update(M, h + (size_t)hh * dv, u, r, qh, inv_norm(qh, dphi), kh,
                     inv_norm(kh, dphi), v + (size_t)hh * dv, xd_sigmoid(fg[hh]),
                     xd_sigmoid(ig[hh]), dphi, dv);
    }
    free(heap);
    return 0;
}

/* Runs fn(ctx, head, scratch) for every head, in parallel over the heads; each thread
 * has `floats` floats of scratch. Returns 0, or −1 when the scratch cannot be had. */
static int each_head(int H, size_t floats, void (*fn)(const void *, int, float *),
                     const void *ctx) {
    int fail = 0;
#pragma omp parallel
    {
        float *scr = malloc(floats * sizeof(float));
        if (!scr) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic)
        for (int hh = 0; hh < H; hh++)
            if (scr) fn(ctx, hh, scr);
        free(scr);
    }
    return fail ? -1 : 0;
}

typedef struct {
    float *h, *cache, *final, *norms;
    const xd_mlstm_in *in;
    const float *init;
    int64_t T;
    const xd_mlstm_cfg *cfg;
} fw_ctx;

/* the forward of one head; scratch: M [dphi][dv], u, r [dv] */
static void forward_head(const void *vc, int hh, float *scr) {
    const fw_ctx *c = vc;
    const xd_mlstm_in *in = c->in;
    int H = c->cfg->H, dphi = c->cfg->dphi, dv = c->cfg->dv, L = c->cfg->chunk;
    size_t csz = (size_t)dphi * dv;
    float *M = scr, *u = scr + csz, *r = u + dv;
    if (c->init) memcpy(M, c->init + hh * csz, csz * sizeof(float));
    else memset(M, 0, csz * sizeof(float));
    for (int64_t t = 0; t < c->T; t++) {
        if (c->cache && t % L == 0)
            memcpy(c->cache + ((t / L) * H + hh) * csz, M, csz * sizeof(float));
        if (doc_reset(in, t)) memset(M, 0, csz * sizeof(float));
        int64_t th = t * H + hh;
        const float *q = in->q + th * dphi, *k = in->k + th * dphi;
        float rq = inv_norm(q, dphi), rk = inv_norm(k, dphi);
        if (c->norms) c->norms[th * 2] = rq, c->norms[th * 2 + 1] = rk;
        token_update(M, c->h + th * dv, u, r, q, rq, k, rk, in->v + th * dv,
                     xd_sigmoid(in->fg[th]), xd_sigmoid(in->ig[th]), dphi, dv);
    }
    if (c->cache && c->T == 0) memcpy(c->cache + hh * csz, M, csz * sizeof(float));
    if (c->final) memcpy(c->final + hh * csz, M, csz * sizeof(float));
}

int xd_delta_forward(float *h, float *cache, float *final, const xd_mlstm_in *in,
                     const float *init, int64_t T, const xd_mlstm_cfg *cfg) {
    xd_mlstm_cfg cf = *cfg;
    if (cf.chunk <= 0) cf.chunk = 64;
    size_t csz = (size_t)cf.dphi * cf.dv;
    float *norms = cache ? cache + n_chunks(T, cf.chunk) * cf.H * (int64_t)csz : NULL;
    fw_ctx c = {h, cache, final, norms, in, init, T, &cf};
    if (each_head(cf.H, csz + 2 * (size_t)cf.dv, forward_head, &c))
        return xd_err("delta rule forward: out of memory for scratch");
    return 0;
}

/* Backward of one head over tokens [t0, t1) of its chunk, from the state entering the
 * chunk (Ms[0]); dM [dphi][dv] holds ∂loss/∂M_{t1−1} on entry and ∂loss/∂M_{t0−1} on
 * return (0 past a document start). Ms [(L+1)][dphi][dv] and U [L][dv] are scratch. */
typedef struct {
    const xd_mlstm_in *in;
    const xd_mlstm_grads *g;
    const float *dh, *norms;
    int H, dphi, dv;
} bw_ctx;

static void chunk_backward(const bw_ctx *c, int hh, int64_t t0, int64_t t1, float *Ms, float *U,
                           float *dM, float *w) {
    int H = c->H, dphi = c->dphi, dv = c->dv;
    size_t csz = (size_t)dphi * dv;
    const xd_mlstm_in *in = c->in;
    float *r = w + dv, *du = r + dv, *dqh = du + dv, *dkh = dqh + dphi;
    /* recompute: Ms[t−t0+1] = M_t (Ms[0]: the state entering the chunk); at a document
     * start the update reads 0, not Ms[t−t0], which stays M_{t−1} (token t−1's h reads it) */
    for (int64_t t = t0; t < t1; t++) {
        float *prev = Ms + (t - t0) * csz, *next = prev + csz;
        if (doc_reset(in, t)) memset(next, 0, csz * sizeof(float));
        else memcpy(next, prev, csz * sizeof(float));
        int64_t th = t * H + hh;
        token_update(next, NULL, U + (t - t0) * dv, r, in->q + th * dphi, c->norms[th * 2],
                     in->k + th * dphi, c->norms[th * 2 + 1], in->v + th * dv,
                     xd_sigmoid(in->fg[th]), xd_sigmoid(in->ig[th]), dphi, dv);
    }
    for (int64_t t = t1 - 1; t >= t0; t--) {
        int64_t th = t * H + hh;
        const float *prev = Ms + (t - t0) * csz, *cur = prev + csz, *u = U + (t - t0) * dv;
        const float *q = in->q + th * dphi, *k = in->k + th * dphi, *v = in->v + th * dv;
        const float *dh = c->dh + th * dv;
        float rq = c->norms[th * 2], rk = c->norms[th * 2 + 1];
        float a = xd_sigmoid(in->fg[th]), b = xd_sigmoid(in->ig[th]);
        /* h = Mᵀq̂: dq̂ = M dh, dM += q̂ dhᵀ */
        for (int j = 0; j < dphi; j++) {
            float *dMj = dM + (size_t)j * dv, qj = q[j] * rq;
            dqh[j] = (float)xd_dot_lanes(cur + (size_t)j * dv, dh, dv);
            for (int i = 0; i < dv; i++) dMj[i] += qj * dh[i];
        }
        /* M_t = α M_{t−1} + k̂ rᵀ: dr = dMᵀk̂, dk̂ = dM r */
        for (int i = 0; i < dv; i++) r[i] = b * (v[i] - a * u[i]), w[i] = 0;
        for (int j = 0; j < dphi; j++) {
            const float *dMj = dM + (size_t)j * dv;
            float kj = k[j] * rk;
            for (int i = 0; i < dv; i++) w[i] += kj * dMj[i];
            dkh[j] = (float)xd_dot_lanes(dMj, r, dv);
        }
        /* r = β(v − α u) */
        double dbeta = 0, dalpha = 0;
        for (int i = 0; i < dv; i++) {
            dbeta += (double)w[i] * (v[i] - a * u[i]);
            dalpha -= (double)b * w[i] * u[i];
            du[i] = -a * b * w[i];
        }
        if (c->g->v)
            for (int i = 0; i < dv; i++) c->g->v[th * dv + i] += b * w[i];
        /* u = M_{t−1}ᵀk̂ and the α·M_{t−1} term (M_{t−1} = 0 at a document start: no
         * contribution, and nothing flows to earlier tokens); then dM ← dM_{t−1} */
        if (doc_reset(in, t)) {
            memset(dM, 0, csz * sizeof(float));
        } else {
            for (int j = 0; j < dphi; j++) {
                const float *Pj = prev + (size_t)j * dv;
                float *dMj = dM + (size_t)j * dv, kj = k[j] * rk;
                dalpha += xd_dot_lanes(dMj, Pj, dv);
                dkh[j] += (float)xd_dot_lanes(Pj, du, dv);
                for (int i = 0; i < dv; i++) dMj[i] = a * dMj[i] + kj * du[i];
            }
        }
        if (c->g->ig) c->g->ig[th] += (float)(dbeta * b * (1.0 - b));
        if (c->g->fg) c->g->fg[th] += (float)(dalpha * a * (1.0 - a));
        /* x̂ = x·rx: dx = rx·(dx̂ − x̂(x̂·dx̂)) */
        if (c->g->q) {
            double s = 0;
            for (int j = 0; j < dphi; j++) s += (double)q[j] * rq * dqh[j];
            for (int j = 0; j < dphi; j++)
                c->g->q[th * dphi + j] += rq * (dqh[j] - q[j] * rq * (float)s);
        }
        if (c->g->k) {
            double s = 0;
            for (int j = 0; j < dphi; j++) s += (double)k[j] * rk * dkh[j];
            for (int j = 0; j < dphi; j++)
                c->g->k[th * dphi + j] += rk * (dkh[j] - k[j] * rk * (float)s);
        }
    }
}

typedef struct {
    bw_ctx b;
    float *dinit;
    const float *dfinal, *cache, *init;
    int64_t T, nc;
    int L;
} bw_all;

/* the backward of one head, chunk by chunk from the last; scratch: dM, the chunk's states
 * Ms [L+1][dphi][dv], U [L][dv] and chunk_backward's vectors */
static void backward_head(const void *vc, int hh, float *scr) {
    const bw_all *a = vc;
    int H = a->b.H, dphi = a->b.dphi, dv = a->b.dv, L = a->L;
    size_t csz = (size_t)dphi * dv;
    float *dM = scr, *Ms = dM + csz, *U = Ms + (size_t)(L + 1) * csz, *w = U + (size_t)L * dv;
    if (a->dfinal) memcpy(dM, a->dfinal + hh * csz, csz * sizeof(float));
    else memset(dM, 0, csz * sizeof(float));
    for (int64_t ci = a->nc - 1; ci >= 0 && a->T > 0; ci--) {
        int64_t t0 = ci * L, t1 = t0 + L < a->T ? t0 + L : a->T;
        memcpy(Ms, a->cache + (ci * H + hh) * csz, csz * sizeof(float));
        chunk_backward(&a->b, hh, t0, t1, Ms, U, dM, w);
    }
    /* what reaches token 0's previous state is the initial state's gradient */
    if (a->dinit && a->init)
        for (size_t i = 0; i < csz; i++) a->dinit[hh * csz + i] += dM[i];
}

int xd_delta_backward(const xd_mlstm_grads *g, float *dinit, const float *dh,
                      const float *dfinal, const float *cache, const xd_mlstm_in *in,
                      const float *init, int64_t T, const xd_mlstm_cfg *cfg) {
    int H = cfg->H, dphi = cfg->dphi, dv = cfg->dv, L = cfg->chunk > 0 ? cfg->chunk : 64;
    size_t csz = (size_t)dphi * dv;
    int64_t nc = n_chunks(T, L);
    bw_all a = {{in, g, dh, cache + nc * H * (int64_t)csz, H, dphi, dv}, dinit, dfinal, cache,
                init, T, nc, L};
    size_t fl = (size_t)(L + 2) * csz + (size_t)L * dv + 3 * (size_t)dv + 2 * (size_t)dphi;
    if (each_head(H, fl, backward_head, &a))
        return xd_err("delta rule backward: out of memory for scratch");
    return 0;
}
