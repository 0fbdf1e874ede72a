/* Training ops (src/kernels/train_ops.h): finite-difference gradient checks,
 * accumulation / NULL-gradient semantics, thread counts (attention
 * bit-identical on 1, 2, 3 threads; the linear backward's sgemms only within
 * a rounding bound, see test_linear_threads), attention forward against the
 * inference kernel and a naive masked reference, RoPE against xd_rope, a
 * hand-computed cross-entropy, and a timing line for attention. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdistill.h"
#include "kernels/kernels.h"
#include "kernels/train_ops.h"
#include "test.h"

/* the scratch-free fallback of the attention backward (train_attention.c) */
void xd_attn_train_backward_loops(float *dq, float *dk, float *dv, const float *dout,
                                  const float *probs, const float *q, const float *k,
                                  const float *v, int T, int nh, int nkv, int hd);

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t g_rng = 0x243F6A8885A308D3ull;

static uint64_t rnd64(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float urand(float lo, float hi) {
    return lo + (hi - lo) * (float)((rnd64() >> 40) * (1.0 / 16777216.0));
}

static float *rnd_buf(size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = urand(lo, hi);
    return x;
}

static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

static float *dup(const float *x, size_t n) {
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs((double)a[i] - b[i]) > m ? fabs((double)a[i] - b[i]) : m;
    return m;
}

static void inv_freq_for(float *inv, int hd, double theta) {
    for (int i = 0; i < hd / 2; i++) inv[i] = (float)pow(theta, -2.0 * i / hd);
}

/* ---- finite differences ------------------------------------------------------
 * Scalar loss L = Σ forward(...) ⊙ R (R fixed and random), evaluated from the
 * fp32 forward with the sum in double. Central differences on one fp32
 * coordinate at a time, dividing by the step actually taken
 * ((float)(v+h) − (float)(v−h)).
 *
 * Step h = 1e-2 (override: XD_FD_H). The error of an fp32 central difference
 * is truncation O(h²·f''') plus the forward's rounding (~6e-8 relative per
 * output) amplified by 1/(2h). A scan over h of the worst error over all the
 * tensors below gave: h = 3e-4: 4e-2, 1e-3: 1.6e-2, 3e-3: 4e-3, 1e-2: 1.5e-3,
 * 3e-2: 1.4e-3 (truncation now showing for SwiGLU) — rounding dominates up
 * to 1e-2, worst for dk, where one key moves every output of every query
 * that sees it. h = 1e-2 sits at the minimum.
 *
 * Tolerance: rel = |a − n| / max(|a| + |n|, 1e-2) ≤ 1e-2, ~7× the worst error
 * observed; the floor keeps coordinates whose gradient is ≈ 0 from dividing
 * rounding noise by nothing. A wrong formula gives rel errors of O(1). */
typedef double (*loss_fn)(void *ctx);

enum { FD_ALL = 256, FD_SUBSET = 64 };

static double fd_check(const char *what, float *p, const float *grad, size_t n, loss_fn f,
                       void *ctx) {
    const char *hs = getenv("XD_FD_H");
    const float h = hs && *hs ? (float)atof(hs) : 1e-2f;
    size_t cnt = n <= FD_ALL ? n : FD_SUBSET;
    double worst = 0;
    size_t worst_i = 0;
    for (size_t c = 0; c < cnt; c++) {
        size_t i = n <= FD_ALL ? c : (size_t)(rnd64() % n);
        float v = p[i], vp = v + h, vm = v - h;
        p[i] = vp;
        double lp = f(ctx);
        p[i] = vm;
        double lm = f(ctx);
        p[i] = v;
        double num = (lp - lm) / ((double)vp - (double)vm), a = grad[i];
        double den = fabs(a) + fabs(num);
        double err = fabs(a - num) / (den > 1e-2 ? den : 1e-2);
        if (err > worst) { worst = err; worst_i = i; }
    }
    printf("  FD %-34s max rel err %.2e  (%zu of %zu coords)\n", what, worst, cnt, n);
    CHECK(worst <= 1e-2, "FD %s: rel err %g at coordinate %zu", what, worst, worst_i);
    return worst;
}

/* ---- 1. FD: linear ---------------------------------------------------------- */

typedef struct {
    float *x, *W, *b, *y;
    const float *R;
    int n, in, out;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    xd_linear(c->y, c->x, c->W, c->b, c->n, c->in, c->out);
    return dot_d(c->y, c->R, (size_t)c->n * c->out);
}

static void test_fd_linear(void) {
    int n = 9, in = 24, out = 20;
    lin_ctx c = {rnd_buf((size_t)n * in, -1, 1), rnd_buf((size_t)out * in, -1, 1),
                 rnd_buf(out, -1, 1), zeros((size_t)n * out), NULL, n, in, out};
    float *R = rnd_buf((size_t)n * out, -1, 1);
    c.R = R;
    float *dx = zeros((size_t)n * in), *dW = zeros((size_t)out * in), *db = zeros(out);
    xd_linear_backward(dx, dW, db, R, c.x, c.W, n, in, out);
    fd_check("linear dx", c.x, dx, (size_t)n * in, lin_loss, &c);
    fd_check("linear dW", c.W, dW, (size_t)out * in, lin_loss, &c);
    fd_check("linear db", c.b, db, out, lin_loss, &c);
    free(c.x), free(c.W), free(c.b), free(c.y), free(R), free(dx), free(dW), free(db);
}

/* ---- FD: RMSNorm -------------------------------------------------------------- */

typedef struct {
    float *x, *w, *y;
    const float *R;
    int n, dim;
    float eps;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    xd_rmsnorm(c->y, c->x, c->w, c->n, c->dim, c->eps);
    return dot_d(c->y, c->R, (size_t)c->n * c->dim);
}

static void test_fd_rmsnorm(void) {
    int n = 6, dim = 40;
    size_t nd = (size_t)n * dim;
    rms_ctx c = {rnd_buf(nd, -1, 1), rnd_buf(dim, 0.5f, 1.5f), zeros(nd), NULL, n, dim, 1e-5f};
    float *R = rnd_buf(nd, -1, 1);
    c.R = R;
    float *dx = zeros(nd), *dw = zeros(dim);
    xd_rmsnorm_backward(dx, dw, R, c.x, c.w, n, dim, c.eps);
    fd_check("rmsnorm dx", c.x, dx, nd, rms_loss, &c);
    fd_check("rmsnorm dw", c.w, dw, dim, rms_loss, &c);
    /* many rows: the dw reduction runs over several pieces and threads */
    int n2 = 300, dim2 = 16;
    size_t nd2 = (size_t)n2 * dim2;
    rms_ctx c2 = {rnd_buf(nd2, -1, 1), rnd_buf(dim2, 0.5f, 1.5f), zeros(nd2), NULL, n2, dim2,
                  1e-6f};
    float *R2 = rnd_buf(nd2, -1, 1);
    c2.R = R2;
    float *dx2 = zeros(nd2), *dw2 = zeros(dim2);
    xd_rmsnorm_backward(dx2, dw2, R2, c2.x, c2.w, n2, dim2, c2.eps);
    fd_check("rmsnorm dx (300 rows)", c2.x, dx2, nd2, rms_loss, &c2);
    fd_check("rmsnorm dw (300 rows)", c2.w, dw2, dim2, rms_loss, &c2);
    free(c.x), free(c.w), free(c.y), free(R), free(dx), free(dw);
    free(c2.x), free(c2.w), free(c2.y), free(R2), free(dx2), free(dw2);
}

/* ---- FD: RoPE with positions ----------------------------------------------------- */

typedef struct {
    float *x, *work;
    const float *R, *inv;
    const int32_t *pos;
    int n, nh, hd, stride;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t sz = (size_t)c->n * c->stride;
    memcpy(c->work, c->x, sz * sizeof(float));
    xd_rope_pos(c->work, c->n, c->nh, c->hd, c->stride, c->pos, c->inv);
    return dot_d(c->work, c->R, sz);
}

static void test_fd_rope(void) {
    int n = 8, nh = 3, hd = 8, stride = nh * hd + 4; /* 4 untouched floats per row */
    int32_t pos[8] = {0, 1, 2, 3, 4, 0, 1, 2000};
    float inv[4];
    inv_freq_for(inv, hd, 10000.0);
    size_t sz = (size_t)n * stride;
    rope_ctx c = {rnd_buf(sz, -1, 1), zeros(sz), NULL, inv, pos, n, nh, hd, stride};
    float *R = rnd_buf(sz, -1, 1);
    c.R = R;
    float *dx = dup(R, sz); /* ∂L/∂x = Rᵀ-rotation of R: the backward, in place */
    xd_rope_pos_backward(dx, n, nh, hd, stride, pos, inv);
    fd_check("rope_pos dx", c.x, dx, sz, rope_loss, &c);
    free(c.x), free(c.work), free(R), free(dx);
}

/* ---- FD: SwiGLU ------------------------------------------------------------------ */

typedef struct {
    float *g, *u, *h;
    const float *R;
    int64_t n;
} swi_ctx;

static double swi_loss(void *p) {
    swi_ctx *c = p;
    xd_swiglu_forward(c->h, c->g, c->u, c->n);
    return dot_d(c->h, c->R, (size_t)c->n);
}

static void test_fd_swiglu(void) {
    int64_t n = 200;
    swi_ctx c = {rnd_buf(n, -5, 5), rnd_buf(n, -1.5f, 1.5f), zeros(n), NULL, n};
    float *R = rnd_buf(n, -1, 1);
    c.R = R;
    float *dg = zeros(n), *du = zeros(n);
    xd_swiglu_backward(dg, du, R, c.g, c.u, n);
    fd_check("swiglu dg", c.g, dg, n, swi_loss, &c);
    fd_check("swiglu du", c.u, du, n, swi_loss, &c);
    /* the forward agrees with the inference kernel (same expression) */
    float *h2 = dup(c.g, n);
    xd_swiglu(h2, c.u, n);
    xd_swiglu_forward(c.h, c.g, c.u, n);
    CHECK(max_diff(h2, c.h, n) == 0, "swiglu forward differs from xd_swiglu");
    free(c.g), free(c.u), free(c.h), free(R), free(dg), free(du), free(h2);
}

/* ---- FD: embedding ----------------------------------------------------------------- */

typedef struct {
    float *E, *x;
    const float *R;
    const int32_t *tok;
    int n, dim;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    xd_embedding_forward(c->x, c->E, c->tok, c->n, c->dim);
    return dot_d(c->x, c->R, (size_t)c->n * c->dim);
}

static void test_fd_embedding(void) {
    int V = 10, dim = 6, n = 12;
    int32_t tok[12] = {3, 7, 3, 0, 9, 3, 7, 1, 1, 5, 3, 9}; /* 3 four times, 7, 9, 1 twice */
    emb_ctx c = {rnd_buf((size_t)V * dim, -1, 1), zeros((size_t)n * dim), NULL, tok, n, dim};
    float *R = rnd_buf((size_t)n * dim, -1, 1);
    c.R = R;
    float *dE = zeros((size_t)V * dim);
    xd_embedding_backward(dE, R, tok, n, dim);
    fd_check("embedding dE (repeated tokens)", c.E, dE, (size_t)V * dim, emb_loss, &c);
    /* rows of tokens never seen get exactly zero */
    for (int j = 0; j < dim; j++) CHECK(dE[2 * dim + j] == 0, "dE of unused token 2 nonzero");
    free(c.E), free(c.x), free(R), free(dE);
}

/* ---- FD: attention ------------------------------------------------------------------ */

typedef struct {
    float *q, *k, *v, *out, *probs;
    const float *R;
    const int32_t *doc;
    int T, nh, nkv, hd, window, sinks;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    xd_attn_train_forward(c->out, c->probs, c->q, c->k, c->v, c->T, c->nh, c->nkv, c->hd, c->doc,
                          c->window, c->sinks);
    return dot_d(c->out, c->R, (size_t)c->T * c->nh * c->hd);
}

static void fd_attention(const char *name, int T, int nh, int nkv, int hd, const int32_t *doc,
                         int window, int sinks) {
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
    att_ctx c = {rnd_buf(nq, -1.5f, 1.5f), rnd_buf(nk, -1.5f, 1.5f), rnd_buf(nk, -1, 1),
                 zeros(nq), zeros((size_t)nh * T * T), NULL, doc, T, nh, nkv, hd, window, sinks};
    float *R = rnd_buf(nq, -1, 1);
    c.R = R;
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    att_loss(&c);
    xd_attn_train_backward(dq, dk, dv, R, c.probs, c.q, c.k, c.v, T, nh, nkv, hd);
    char what[96];
    snprintf(what, sizeof what, "attention dq (%s)", name);
    fd_check(what, c.q, dq, nq, att_loss, &c);
    snprintf(what, sizeof what, "attention dk (%s)", name);
    fd_check(what, c.k, dk, nk, att_loss, &c);
    snprintf(what, sizeof what, "attention dv (%s)", name);
    fd_check(what, c.v, dv, nk, att_loss, &c);

    /* the scratch-free fallback computes the same gradients (plain loops vs
     * blocked sgemms: only summation order differs → 1e-5 of the scale) */
    att_loss(&c);
    float *fq = zeros(nq), *fk = zeros(nk), *fv = zeros(nk);
    xd_attn_train_backward_loops(fq, fk, fv, R, c.probs, c.q, c.k, c.v, T, nh, nkv, hd);
    CHECK(max_diff(fq, dq, nq) <= 1e-5 * (1 + max_abs(dq, nq)), "%s: loops dq differ", name);
    CHECK(max_diff(fk, dk, nk) <= 1e-5 * (1 + max_abs(dk, nk)), "%s: loops dk differ", name);
    CHECK(max_diff(fv, dv, nk) <= 1e-5 * (1 + max_abs(dv, nk)), "%s: loops dv differ", name);
    free(fq), free(fk), free(fv);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.probs), free(R), free(dq), free(dk),
        free(dv);
}

static void test_fd_attention(void) {
    int32_t doc12[12];
    for (int t = 0; t < 12; t++) doc12[t] = t < 5 ? 0 : 5; /* two documents: 0..4, 5..11 */
    fd_attention("causal", 12, 2, 2, 8, NULL, 0, 0);
    fd_attention("GQA nh=4 nkv=2", 12, 4, 2, 8, NULL, 0, 0);
    fd_attention("window=3 sinks=2", 12, 2, 1, 8, NULL, 3, 2);
    fd_attention("docs at 0,5", 12, 2, 2, 8, doc12, 0, 0);
    fd_attention("docs+window=3+sinks=2, GQA", 12, 4, 2, 8, doc12, 3, 2);
    /* more than one 64-row block and column spans split by the window */
    int32_t doc100[100];
    for (int t = 0; t < 100; t++) doc100[t] = t < 90 ? 0 : 90;
    fd_attention("T=100 docs+window=12+sinks=3", 100, 2, 1, 8, doc100, 12, 3);
}

/* ---- FD: cross-entropy ---------------------------------------------------------------- */

typedef struct {
    float *logits, *dl;
    const int32_t *tg;
    int n, V;
    float scale;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    return c->scale * xd_cross_entropy(c->dl, c->logits, c->tg, c->n, c->V, c->scale);
}

static void test_fd_cross_entropy(void) {
    int n = 6, V = 9;
    int32_t tg[6] = {3, -1, 0, 8, -1, 3}; /* two ignored rows */
    float scale = 1.0f / 4;              /* 1 / n_valid */
    ce_ctx c = {rnd_buf((size_t)n * V, -3, 3), zeros((size_t)n * V), tg, n, V, scale};
    float *dl = zeros((size_t)n * V);
    xd_cross_entropy(dl, c.logits, tg, n, V, scale);
    /* dlogits is the gradient of scale·Σ loss */
    fd_check("cross-entropy dlogits", c.logits, dl, (size_t)n * V, ce_loss, &c);
    for (int j = 0; j < V; j++)
        CHECK(dl[1 * V + j] == 0 && dl[4 * V + j] == 0, "ignored row has nonzero gradient");
    free(c.logits), free(c.dl), free(dl);
}

/* ---- 2. accumulation and NULL gradients -------------------------------------------
 * Calling a backward twice on zeroed gradients must give exactly twice the
 * first result up to one rounding per accumulation step: blocked sgemms with
 * beta = 1 add each block's contribution to a nonzero value the second time,
 * so allow 1e-5 of the gradient's scale. A NULL gradient is skipped and the
 * others are unchanged (same computations: 1e-6 of the scale). */
static void check_twice(const char *what, const float *g1, const float *g2, size_t n) {
    double m = max_abs(g1, n), e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g2[i] - 2.0 * g1[i]);
        e = d > e ? d : e;
    }
    CHECK(m > 0 && e <= 1e-5 * m, "%s: twice != 2×once (err %g, scale %g)", what, e, m);
}

static void check_same(const char *what, const float *a, const float *b, size_t n) {
    CHECK(max_diff(a, b, n) <= 1e-6 * (1 + max_abs(b, n)), "%s differs with NULL grads", what);
}

static void test_accumulate_linear(void) {
    int n = 33, in = 40, out = 300; /* out > 256: two db column chunks */
    float *x = rnd_buf((size_t)n * in, -1, 1), *W = rnd_buf((size_t)out * in, -1, 1);
    float *dy = rnd_buf((size_t)n * out, -1, 1);
    float *dx1 = zeros((size_t)n * in), *dW1 = zeros((size_t)out * in), *db1 = zeros(out);
    float *dx2 = zeros((size_t)n * in), *dW2 = zeros((size_t)out * in), *db2 = zeros(out);
    xd_linear_backward(dx1, dW1, db1, dy, x, W, n, in, out);
    xd_linear_backward(dx2, dW2, db2, dy, x, W, n, in, out);
    xd_linear_backward(dx2, dW2, db2, dy, x, W, n, in, out);
    check_twice("linear dx", dx1, dx2, (size_t)n * in);
    check_twice("linear dW", dW1, dW2, (size_t)out * in);
    check_twice("linear db", db1, db2, out);
    float *a = zeros((size_t)n * in), *b = zeros((size_t)out * in), *cc = zeros(out);
    xd_linear_backward(a, NULL, NULL, dy, x, W, n, in, out);
    xd_linear_backward(NULL, b, NULL, dy, x, W, n, in, out);
    xd_linear_backward(NULL, NULL, cc, dy, x, W, n, in, out);
    xd_linear_backward(NULL, NULL, NULL, dy, x, W, n, in, out);
    check_same("linear dx", a, dx1, (size_t)n * in);
    check_same("linear dW", b, dW1, (size_t)out * in);
    check_same("linear db", cc, db1, out);
    /* db by hand: column sums */
    double e = 0;
    for (int j = 0; j < out; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += dy[(size_t)i * out + j];
        e = fabs(s - db1[j]) > e ? fabs(s - db1[j]) : e;
    }
    CHECK(e <= 1e-5, "linear db != column sums of dy (err %g)", e);
    free(x), free(W), free(dy), free(dx1), free(dW1), free(db1), free(dx2), free(dW2), free(db2),
        free(a), free(b), free(cc);
}

/* Threads and xd_linear_backward. Its dx and dW are top-level sgemms that
 * OpenBLAS splits over the threads, and the split changes the rounding (0.3.21
 * at this shape: the Cooperlake, Haswell, Zen and Sandybridge kernels all
 * give other bits on 1, 2 and 3 threads) — so these are NOT bit-identical
 * across thread counts, and train_ops.c does not claim it. What is checked:
 *  - the same call at one thread count gives the same bits (what a resumed
 *    training run relies on);
 *  - across 1, 2, 3 threads each element agrees within 2·γ_K·Σ_k |a_k b_k|:
 *    any order of summing K fp32 products (rounded or fused) is within
 *    γ_K·Σ|a_k b_k| of the exact sum, γ_K = K·u/(1 − K·u), u = 2^−24
 *    (Higham, Accuracy and Stability of Numerical Algorithms, §3.1 and §4.2),
 *    so two orders differ by at most twice that. The bound is the worst case
 *    for this K (out = 80 for dx, n = 700 for dW), not a guess at a typical
 *    difference: larger gaps mean a wrong result, not another rounding;
 *  - db, a reduction coded in train_ops.c, is bit-identical.
 * 700×96×80 is well above OpenBLAS's threading threshold (M·N·K > 4·65536). */
static void test_linear_threads(void) {
    enum { N = 700, IN = 96, OUT = 80 };
    float *x = rnd_buf((size_t)N * IN, -1, 1), *W = rnd_buf((size_t)OUT * IN, -1, 1);
    float *dy = rnd_buf((size_t)N * OUT, -1, 1);
    /* Σ_k |a_k b_k| per element, in double */
    double *sx = calloc((size_t)N * IN, sizeof(double));
    double *sw = calloc((size_t)OUT * IN, sizeof(double));
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OUT; o++) {
            double g = fabs(dy[(size_t)i * OUT + o]);
            for (int c = 0; c < IN; c++) {
                sx[(size_t)i * IN + c] += g * fabs(W[(size_t)o * IN + c]);
                sw[(size_t)o * IN + c] += g * fabs(x[(size_t)i * IN + c]);
            }
        }
    const double u = 0x1p-24, gx = OUT * u / (1 - OUT * u), gw = N * u / (1 - N * u);
    float *r[4][3]; /* [1 thread, 2, 3, 2 again][dx, dW, db] */
    size_t sz[3] = {(size_t)N * IN, (size_t)OUT * IN, OUT};
    int nth = omp_get_max_threads(), thr[4] = {1, 2, 3, 2};
    for (int v = 0; v < 4; v++) {
        for (int j = 0; j < 3; j++) r[v][j] = zeros(sz[j]);
        omp_set_num_threads(thr[v]);
        xd_linear_backward(r[v][0], r[v][1], r[v][2], dy, x, W, N, IN, OUT);
    }
    omp_set_num_threads(nth);
    int again = 1;
    for (int j = 0; j < 3; j++) again &= !memcmp(r[1][j], r[3][j], sz[j] * sizeof(float));
    CHECK(again, "linear backward: two calls on 2 threads differ");
    double worst = 0;
    size_t ndiff = 0;
    for (int v = 1; v <= 2; v++) {
        for (size_t e = 0; e < sz[0]; e++) {
            double d = fabs((double)r[v][0][e] - r[0][0][e]), b = 2 * gx * sx[e];
            worst = fmax(worst, b > 0 ? d / b : d > 0 ? INFINITY : 0);
            ndiff += d != 0;
        }
        for (size_t e = 0; e < sz[1]; e++) {
            double d = fabs((double)r[v][1][e] - r[0][1][e]), b = 2 * gw * sw[e];
            worst = fmax(worst, b > 0 ? d / b : d > 0 ? INFINITY : 0);
            ndiff += d != 0;
        }
        CHECK(!memcmp(r[v][2], r[0][2], sz[2] * sizeof(float)), "linear db differs on %d threads",
              thr[v]);
    }
    printf("  linear backward %dx%dx%d, 1 vs 2 and 3 threads (OpenBLAS kernel %s): %zu elements of "
           "dx, dW differ, max |diff| = %.2g of the bound 2·γ_K·Σ|ab|; db bit-identical; same "
           "thread count: bit-identical\n",
           N, OUT, IN, openblas_get_corename(), ndiff, worst);
    CHECK(worst <= 1, "linear dx/dW across thread counts: %g × the rounding bound", worst);
    for (int v = 0; v < 4; v++)
        for (int j = 0; j < 3; j++) free(r[v][j]);
    free(x), free(W), free(dy), free(sx), free(sw);
}

static void test_accumulate_pointwise(void) {
    /* RMSNorm */
    int n = 70, dim = 24;
    size_t nd = (size_t)n * dim;
    float *x = rnd_buf(nd, -1, 1), *w = rnd_buf(dim, 0.5f, 1.5f), *dy = rnd_buf(nd, -1, 1);
    float *dx1 = zeros(nd), *dw1 = zeros(dim), *dx2 = zeros(nd), *dw2 = zeros(dim);
    xd_rmsnorm_backward(dx1, dw1, dy, x, w, n, dim, 1e-5f);
    xd_rmsnorm_backward(dx2, dw2, dy, x, w, n, dim, 1e-5f);
    xd_rmsnorm_backward(dx2, dw2, dy, x, w, n, dim, 1e-5f);
    check_twice("rmsnorm dx", dx1, dx2, nd);
    check_twice("rmsnorm dw", dw1, dw2, dim);
    float *a = zeros(nd), *b = zeros(dim);
    xd_rmsnorm_backward(a, NULL, dy, x, w, n, dim, 1e-5f);
    xd_rmsnorm_backward(NULL, b, dy, x, w, n, dim, 1e-5f);
    xd_rmsnorm_backward(NULL, NULL, dy, x, w, n, dim, 1e-5f);
    check_same("rmsnorm dx", a, dx1, nd);
    check_same("rmsnorm dw", b, dw1, dim);
    free(x), free(w), free(dy), free(dx1), free(dw1), free(dx2), free(dw2), free(a), free(b);

    /* SwiGLU */
    int64_t m = 1000;
    float *g = rnd_buf(m, -4, 4), *u = rnd_buf(m, -1, 1), *dh = rnd_buf(m, -1, 1);
    float *dg1 = zeros(m), *du1 = zeros(m), *dg2 = zeros(m), *du2 = zeros(m);
    xd_swiglu_backward(dg1, du1, dh, g, u, m);
    xd_swiglu_backward(dg2, du2, dh, g, u, m);
    xd_swiglu_backward(dg2, du2, dh, g, u, m);
    check_twice("swiglu dg", dg1, dg2, m);
    check_twice("swiglu du", du1, du2, m);
    float *ag = zeros(m), *au = zeros(m);
    xd_swiglu_backward(ag, NULL, dh, g, u, m);
    xd_swiglu_backward(NULL, au, dh, g, u, m);
    xd_swiglu_backward(NULL, NULL, dh, g, u, m);
    check_same("swiglu dg", ag, dg1, m);
    check_same("swiglu du", au, du1, m);
    free(g), free(u), free(dh), free(dg1), free(du1), free(dg2), free(du2), free(ag), free(au);

    /* embedding */
    int V = 50, d = 130, nt = 40; /* 130 columns: three column chunks */
    int32_t tok[40];
    for (int i = 0; i < nt; i++) tok[i] = (int32_t)(rnd64() % 7) * 7; /* heavy repeats */
    float *ddx = rnd_buf((size_t)nt * d, -1, 1);
    float *dE1 = zeros((size_t)V * d), *dE2 = zeros((size_t)V * d);
    xd_embedding_backward(dE1, ddx, tok, nt, d);
    xd_embedding_backward(dE2, ddx, tok, nt, d);
    xd_embedding_backward(dE2, ddx, tok, nt, d);
    check_twice("embedding dE", dE1, dE2, (size_t)V * d);
    xd_embedding_backward(NULL, ddx, tok, nt, d);
    free(ddx), free(dE1), free(dE2);
}

static void accumulate_attention(const char *name, int T, int nh, int nkv, int hd,
                                 const int32_t *doc, int window, int sinks, int subsets) {
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
    float *q = rnd_buf(nq, -1, 1), *k = rnd_buf(nk, -1, 1), *v = rnd_buf(nk, -1, 1);
    float *dO = rnd_buf(nq, -1, 1), *out = zeros(nq), *P = zeros((size_t)nh * T * T);
    xd_attn_train_forward(out, P, q, k, v, T, nh, nkv, hd, doc, window, sinks);
    size_t sz[3] = {nq, nk, nk};
    const char *nm[3] = {"dq", "dk", "dv"};
    char what[96];
    float *g1[3] = {zeros(nq), zeros(nk), zeros(nk)}, *g2[3] = {zeros(nq), zeros(nk), zeros(nk)};
    xd_attn_train_backward(g1[0], g1[1], g1[2], dO, P, q, k, v, T, nh, nkv, hd);
    xd_attn_train_backward(g2[0], g2[1], g2[2], dO, P, q, k, v, T, nh, nkv, hd);
    xd_attn_train_backward(g2[0], g2[1], g2[2], dO, P, q, k, v, T, nh, nkv, hd);
    for (int j = 0; j < 3; j++) {
        snprintf(what, sizeof what, "attention %s (%s)", nm[j], name);
        check_twice(what, g1[j], g2[j], sz[j]);
    }
    /* against the plain-loop fallback (summation order only: 1e-5 of the
     * scale); skipped for the longest case, where it is slow under ASan */
    if (T <= 300) {
        float *gl[3] = {zeros(nq), zeros(nk), zeros(nk)};
        xd_attn_train_backward_loops(gl[0], gl[1], gl[2], dO, P, q, k, v, T, nh, nkv, hd);
        for (int j = 0; j < 3; j++) {
            double e = max_diff(gl[j], g1[j], sz[j]);
            CHECK(e <= 1e-5 * (1 + max_abs(g1[j], sz[j])), "%s: %s vs loops err %g", name, nm[j],
                  e);
            free(gl[j]);
        }
    }
    /* every subset of NULL gradients */
    for (int mask = 0; mask < (subsets ? 8 : 0); mask++) {
        float *g[3];
        for (int j = 0; j < 3; j++) g[j] = mask >> j & 1 ? zeros(sz[j]) : NULL;
        xd_attn_train_backward(g[0], g[1], g[2], dO, P, q, k, v, T, nh, nkv, hd);
        for (int j = 0; j < 3; j++) {
            if (!g[j]) continue;
            snprintf(what, sizeof what, "attention %s (%s, subset %d)", nm[j], name, mask);
            check_same(what, g[j], g1[j], sz[j]);
            free(g[j]);
        }
    }
    /* the result does not depend on the thread count: every element is
     * summed by one job in a fixed order, and every sgemm runs on one thread
     * inside the OpenMP region (train_attention.c) → bit-identical on 1 and
     * on 3 threads to the run above (OMP_NUM_THREADS threads, 2 under ctest) */
    int nth = omp_get_max_threads();
    float *g3[3] = {zeros(nq), zeros(nk), zeros(nk)}, *o3 = zeros(nq);
    float *P3 = zeros((size_t)nh * T * T);
    for (int th = 1; th <= 3; th += 2) {
        for (int j = 0; j < 3; j++) memset(g3[j], 0, sz[j] * sizeof(float));
        omp_set_num_threads(th);
        xd_attn_train_forward(o3, P3, q, k, v, T, nh, nkv, hd, doc, window, sinks);
        xd_attn_train_backward(g3[0], g3[1], g3[2], dO, P3, q, k, v, T, nh, nkv, hd);
        omp_set_num_threads(nth);
        CHECK(memcmp(o3, out, nq * sizeof(float)) == 0, "%s: forward differs with %d thread(s)",
              name, th);
        CHECK(memcmp(P3, P, (size_t)nh * T * T * sizeof(float)) == 0,
              "%s: probs differ with %d thread(s)", name, th);
        for (int j = 0; j < 3; j++)
            CHECK(memcmp(g3[j], g1[j], sz[j] * sizeof(float)) == 0,
                  "%s: %s differs with %d thread(s)", name, nm[j], th);
    }
    for (int j = 0; j < 3; j++) free(g1[j]), free(g2[j]), free(g3[j]);
    free(o3), free(P3);
    free(q), free(k), free(v), free(dO), free(out), free(P);
}

static void test_accumulate_attention(void) {
    int32_t doc[150];
    for (int t = 0; t < 150; t++) doc[t] = t < 40 ? 0 : t < 130 ? 40 : 130;
    accumulate_attention("causal MHA", 70, 2, 2, 16, NULL, 0, 0, 1);
    accumulate_attention("GQA docs+window+sinks", 150, 6, 2, 16, doc, 20, 4, 1);
    /* longer sequences: the key-column pass uses 32- and 64-wide blocks */
    int32_t doc2[520];
    for (int t = 0; t < 520; t++) doc2[t] = t < 200 ? 0 : 200;
    accumulate_attention("T=300 GQA causal", 300, 8, 4, 8, NULL, 0, 0, 0);
    accumulate_attention("T=520 docs+window+sinks", 520, 4, 4, 8, doc2, 70, 2, 0);
    /* sgemms large enough (64×256×64) that OpenBLAS would split them over the
     * threads were they called outside the OpenMP region; with the Haswell or
     * Zen kernels the thread-count check of accumulate_attention then fails */
    accumulate_attention("T=256 hd=64 GQA causal", 256, 4, 2, 64, NULL, 0, 0, 0);
}

/* ---- 3. attention forward vs the inference kernel and a naive reference ---------- */

/* O(T²) reference in double with the mask written out. */
static void ref_attention(double *out, double *P, const float *q, const float *k, const float *v,
                          int T, int nh, int nkv, int hd, const int32_t *doc, int window,
                          int sinks) {
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    double scale = 1.0 / sqrt((double)hd);
    for (int h = 0; h < nh; h++) {
        int g = h / group;
        for (int t = 0; t < T; t++) {
            double *p = P + ((size_t)h * T + t) * T, mx = -INFINITY, sum = 0;
            int d = doc ? doc[t] : 0;
            for (int s = 0; s < T; s++) {
                int vis = s >= d && s <= t;
                if (window > 0 && !(s - d < sinks || t - s < window)) vis = 0;
                if (!vis) { p[s] = NAN; continue; }
                double acc = 0;
                for (int i = 0; i < hd; i++)
                    acc += (double)q[(size_t)t * qd + h * hd + i] * k[(size_t)s * kvd + g * hd + i];
                p[s] = acc * scale;
                mx = p[s] > mx ? p[s] : mx;
            }
            for (int s = 0; s < T; s++) {
                if (isnan(p[s])) { p[s] = -1; continue; } /* -1 marks masked */
                p[s] = exp(p[s] - mx);
                sum += p[s];
            }
            for (int i = 0; i < hd; i++) out[(size_t)t * qd + h * hd + i] = 0;
            for (int s = 0; s < T; s++) {
                if (p[s] < 0) continue;
                p[s] /= sum;
                for (int i = 0; i < hd; i++)
                    out[(size_t)t * qd + h * hd + i] += p[s] * v[(size_t)s * kvd + g * hd + i];
            }
        }
    }
}

/* out to 1e-5: fp32 dot products of ≤ 100 terms of O(1) values, softmax and
 * P·V in fp32 — errors are ~1e-6. probs: exactly 0 where masked, rows sum to
 * 1 within 1e-5 (fp32 sum of ≤ 100 terms). */
static void check_vs_ref(const char *name, int T, int nh, int nkv, int hd, const int32_t *doc,
                         int window, int sinks) {
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd, np = (size_t)nh * T * T;
    float *q = rnd_buf(nq, -2, 2), *k = rnd_buf(nk, -2, 2), *v = rnd_buf(nk, -1, 1);
    float *out = zeros(nq), *P = malloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) P[i] = 12345.0f; /* the forward must write every entry */
    double *rout = malloc(nq * sizeof(double)), *rP = malloc(np * sizeof(double));
    xd_attn_train_forward(out, P, q, k, v, T, nh, nkv, hd, doc, window, sinks);
    ref_attention(rout, rP, q, k, v, T, nh, nkv, hd, doc, window, sinks);
    double eo = 0, ep = 0, esum = 0;
    int masked_bad = 0, vis_bad = 0;
    for (size_t i = 0; i < nq; i++) eo = fabs(out[i] - rout[i]) > eo ? fabs(out[i] - rout[i]) : eo;
    for (size_t r = 0; r < (size_t)nh * T; r++) {
        double s = 0;
        for (int c = 0; c < T; c++) {
            size_t i = r * T + c;
            if (rP[i] < 0) masked_bad += P[i] != 0.0f;
            else {
                vis_bad += !(P[i] > 0);
                ep = fabs(P[i] - rP[i]) > ep ? fabs(P[i] - rP[i]) : ep;
            }
            s += P[i];
        }
        esum = fabs(s - 1) > esum ? fabs(s - 1) : esum;
    }
    CHECK(eo <= 1e-5, "%s: out vs naive reference err %g", name, eo);
    CHECK(ep <= 1e-5, "%s: probs vs naive reference err %g", name, ep);
    CHECK(esum <= 1e-5, "%s: prob rows sum to 1 ± %g", name, esum);
    CHECK(masked_bad == 0, "%s: %d masked probs not exactly 0", name, masked_bad);
    CHECK(vis_bad == 0, "%s: %d visible probs not > 0", name, vis_bad);
    printf("  attention forward %-30s out err %.1e, probs err %.1e\n", name, eo, ep);
    free(q), free(k), free(v), free(out), free(P), free(rout), free(rP);
}

static void test_attention_forward(void) {
    /* equals xd_attention (pos0 = 0, no window, one document) */
    int T = 100, nh = 4, nkv = 2, hd = 16;
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
    float *q = rnd_buf(nq, -2, 2), *k = rnd_buf(nk, -2, 2), *v = rnd_buf(nk, -1, 1);
    float *o1 = zeros(nq), *o2 = zeros(nq), *P = zeros((size_t)nh * T * T);
    xd_attn_train_forward(o1, P, q, k, v, T, nh, nkv, hd, NULL, 0, 0);
    CHECK(xd_attention(o2, q, k, v, T, 0, nh, nkv, hd) == 0, "xd_attention failed");
    double e = max_diff(o1, o2, nq);
    printf("  attention forward vs xd_attention: max abs err %.1e\n", e);
    CHECK(e <= 1e-5, "train forward vs xd_attention err %g", e);
    free(q), free(k), free(v), free(o1), free(o2), free(P);

    int32_t doc[100];
    for (int t = 0; t < 100; t++) doc[t] = t < 30 ? 0 : t < 90 ? 30 : 90;
    check_vs_ref("causal", 100, 4, 2, 16, NULL, 0, 0);
    check_vs_ref("docs", 100, 4, 2, 16, doc, 0, 0);
    check_vs_ref("window=12", 100, 4, 2, 16, NULL, 12, 0);
    check_vs_ref("window=12 sinks=3", 100, 4, 2, 16, NULL, 12, 3);
    check_vs_ref("docs+window=12+sinks=3", 100, 4, 1, 16, doc, 12, 3);
    check_vs_ref("docs+window=1+sinks=5", 100, 2, 2, 16, doc, 1, 5);
}

/* ---- 4. RoPE ----------------------------------------------------------------------------- */

static void test_rope(void) {
    int n = 20, nh = 3, hd = 16;
    float inv[8];
    inv_freq_for(inv, hd, 10000.0);
    int32_t pos[20];
    for (int stride = nh * hd; stride <= nh * hd + 8; stride += 8) {
        size_t sz = (size_t)n * stride;
        float *x = rnd_buf(sz, -1, 1);
        /* pos = p0 + t reproduces xd_rope(pos0 = p0) bit for bit */
        for (int p0 = 0; p0 <= 1000; p0 += 1000) {
            float *a = dup(x, sz), *b = dup(x, sz);
            for (int t = 0; t < n; t++) pos[t] = p0 + t;
            xd_rope(a, n, nh, hd, stride, p0, inv);
            xd_rope_pos(b, n, nh, hd, stride, pos, inv);
            CHECK(memcmp(a, b, sz * sizeof(float)) == 0, "rope_pos != xd_rope (pos0 %d, stride %d)",
                  p0, stride);
            free(a), free(b);
        }
        /* packed documents: positions restart; each segment equals xd_rope from 0 */
        {
            float *a = dup(x, sz), *b = dup(x, sz);
            for (int t = 0; t < n; t++) pos[t] = t < 7 ? t : t - 7;
            xd_rope(a, 7, nh, hd, stride, 0, inv);
            xd_rope(a + (size_t)7 * stride, n - 7, nh, hd, stride, 0, inv);
            xd_rope_pos(b, n, nh, hd, stride, pos, inv);
            CHECK(memcmp(a, b, sz * sizeof(float)) == 0, "rope_pos with restarts != xd_rope");
            free(a), free(b);
        }
        /* backward(forward(x)) = x: the rotation is orthogonal; fp32 rounding of
         * cos/sin and two rotations leave ~2e-7 on values ≤ 1 → 1e-6 */
        {
            float *a = dup(x, sz);
            for (int t = 0; t < n; t++) pos[t] = t * 397;
            xd_rope_pos(a, n, nh, hd, stride, pos, inv);
            double moved = max_diff(a, x, sz);
            xd_rope_pos_backward(a, n, nh, hd, stride, pos, inv);
            double e = max_diff(a, x, sz);
            CHECK(moved > 0.1 && e <= 1e-6, "rope roundtrip err %g (moved %g)", e, moved);
            free(a);
        }
        free(x);
    }
}

/* ---- 5. cross-entropy by hand ------------------------------------------------------------ */

static void test_cross_entropy_values(void) {
    /* row 0: logits [1,2,3], target 2:
     *   Σe = e + e² + e³ = 2.718281828 + 7.389056099 + 20.085536923 = 30.192874850
     *   loss = log(30.192874850) − 3 = 3.407605964 − 3 = 0.407605964
     *   softmax = [0.090030573, 0.244728471, 0.665240956]
     * row 1: logits [0,0,0], target 0: loss = log 3 = 1.098612289, softmax 1/3 each
     * row 2: target −1: ignored (no loss, zero gradient)
     * total = 1.506218253; scale = 1/n_valid = 1/2:
     *   dlogits row 0 = ½[0.090030573, 0.244728471, 0.665240956 − 1]
     *   dlogits row 1 = ½[1/3 − 1, 1/3, 1/3]
     * Tolerances: loss 1e-7 (double accumulation of exactly representable
     * inputs, expf in fp32 → ~1e-7 relative), dlogits 1e-6 (fp32). */
    float lg[9] = {1, 2, 3, 0, 0, 0, 5, -1, 2};
    int32_t tg[3] = {2, 0, -1};
    float want[9] = {0.5f * 0.090030573f, 0.5f * 0.244728471f, 0.5f * (0.665240956f - 1),
                     0.5f * (1.0f / 3 - 1), 0.5f / 3, 0.5f / 3, 0, 0, 0};
    float dl[9];
    double loss = xd_cross_entropy(dl, lg, tg, 3, 3, 0.5f);
    CHECK_NEAR(loss, 1.506218253, 1e-6, "cross-entropy summed loss");
    for (int i = 0; i < 9; i++) CHECK_NEAR(dl[i], want[i], 1e-6, "cross-entropy dlogits");
    /* a single row: the loss of the brief's example */
    CHECK_NEAR(xd_cross_entropy(dl, lg, tg, 1, 3, 1.0f), 0.40760596, 1e-7, "CE [1,2,3]→2");

    /* aliasing: dlogits == logits gives the same numbers */
    float al[9];
    memcpy(al, lg, sizeof al);
    double loss2 = xd_cross_entropy(al, al, tg, 3, 3, 0.5f);
    CHECK(loss2 == loss, "aliased CE loss %g vs %g", loss2, loss);
    for (int i = 0; i < 9; i++) CHECK_NEAR(al[i], want[i], 1e-6, "aliased dlogits");

    /* stability: shifting logits by 1000 changes nothing (naive exp overflows) */
    float big[3] = {1001, 1002, 1003};
    int32_t t2 = 2;
    double lb = xd_cross_entropy(dl, big, &t2, 1, 3, 1.0f);
    CHECK(isfinite(lb) && fabs(lb - 0.40760596) <= 1e-6, "CE with logits ~1000: %g", lb);
    CHECK(isfinite(dl[0]) && fabs(dl[2] - (0.665240956 - 1)) <= 1e-6, "CE grad with logits ~1000");

    /* a larger batch: sum = Σ per-row NLL (xd_token_nll, double) */
    int n = 37, V = 101;
    float *L = rnd_buf((size_t)n * V, -8, 8), *D = zeros((size_t)n * V);
    int32_t tgs[37];
    double want_sum = 0;
    for (int i = 0; i < n; i++) {
        tgs[i] = i % 5 == 4 ? -1 : (int32_t)(rnd64() % V);
        if (tgs[i] >= 0) want_sum += xd_token_nll(L + (size_t)i * V, V, tgs[i]);
    }
    double got = xd_cross_entropy(D, L, tgs, n, V, 1.0f);
    CHECK(fabs(got - want_sum) <= 1e-5 * want_sum, "CE sum %g vs Σ xd_token_nll %g", got,
          want_sum);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < V; j++) s += D[(size_t)i * V + j];
        CHECK(fabs(s) <= 1e-5, "CE gradient row %d sums to %g, not 0", i, s);
    }
    free(L), free(D);
}

/* ---- timing ---------------------------------------------------------------------------- */

static void time_attention(int T, int nh, int nkv, int hd, int window, int sinks, int reps) {
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
    float *q = rnd_buf(nq, -1, 1), *k = rnd_buf(nk, -1, 1), *v = rnd_buf(nk, -1, 1);
    float *dO = rnd_buf(nq, -1, 1), *out = zeros(nq), *P = zeros((size_t)nh * T * T);
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    double bf = 1e9, bb = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        xd_attn_train_forward(out, P, q, k, v, T, nh, nkv, hd, NULL, window, sinks);
        double t1 = omp_get_wtime();
        xd_attn_train_backward(dq, dk, dv, dO, P, q, k, v, T, nh, nkv, hd);
        double t2 = omp_get_wtime();
        bf = t1 - t0 < bf ? t1 - t0 : bf;
        bb = t2 - t1 < bb ? t2 - t1 : bb;
    }
    printf("  timing: attention T=%d nh=%d nkv=%d hd=%d window=%d sinks=%d, %d threads: "
           "forward %.2f ms, backward %.2f ms (best of %d)\n",
           T, nh, nkv, hd, window, sinks, omp_get_max_threads(), bf * 1e3, bb * 1e3, reps);
    free(q), free(k), free(v), free(dO), free(out), free(P), free(dq), free(dk), free(dv);
}

int main(void) {
    printf("finite differences:\n");
    test_fd_linear();
    test_fd_rmsnorm();
    test_fd_rope();
    test_fd_swiglu();
    test_fd_embedding();
    test_fd_attention();
    test_fd_cross_entropy();
    printf("accumulation / NULL gradients / thread-count independence\n");
    test_accumulate_linear();
    test_linear_threads();
    test_accumulate_pointwise();
    test_accumulate_attention();
    printf("attention forward:\n");
    test_attention_forward();
    printf("rope, cross-entropy values\n");
    test_rope();
    test_cross_entropy_values();
#ifndef UNDER_SANITIZER /* timings under ASan mean nothing and cost seconds */
    time_attention(512, 9, 3, 64, 0, 0, 3);
    time_attention(512, 9, 3, 64, 64, 4, 3);
#endif
    const char *big = getenv("XD_TRAIN_OPS_BENCH"); /* optional: the largest shapes */
    if (big && *big) {
        time_attention(2048, 32, 8, 128, 0, 0, 2);
        time_attention(2048, 32, 8, 128, 256, 4, 2);
    }
    return test_summary("train_ops");
}
