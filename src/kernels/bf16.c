/* Optional bf16 compute for the batched matrix products (xd_linear with
 * n > 1 and xd_linear_backward), on oneDNN's matmul (built with
 * XD_HAVE_DNNL). The operands are rounded to bf16 on the fly by core/f16.h's
 * xd_fp32_to_bf16_n (round to nearest even, subnormals kept: torch's
 * rounding; not AVX512-BF16's vcvtne2ps2bf16, which flushes denormal inputs
 * to zero, so the result does not depend on the CPU); the products are
 * accumulated in fp32 and written (or added, for gradients) into fp32
 * outputs. Weights stay fp32: they are the masters the optimiser updates.
 *
 * Inside a cache scope (xd_bf16_cache_begin/end, which xd_tm_step puts
 * around one forward + backward) a weight matrix is converted once and its
 * bf16 copy reused (the forward and the backward's dx product read the same
 * W); the scope's start drops every copy, so a copy never outlives the
 * weights it was made from across optimiser steps. Outside a scope nothing
 * is cached.
 *
 * Not thread-safe: one caller thread (the work itself runs on OpenMP). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/f16.h"
#include "kernels.h"

#ifdef XD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

/* ---- fp32 → bf16 --------------------------------------------------------- */

/* xd_fp32_to_bf16_n, split into chunks over the threads when n is large (the
 * result is the same for any thread count: each value is rounded alone). */
void xd_bf16_from_f32(uint16_t *dst, const float *src, int64_t n) {
    enum { CHUNK = 1 << 15 };
    if (n < 2 * CHUNK) {
        xd_fp32_to_bf16_n(dst, src, (size_t)n);
        return;
    }
    int64_t nchunk = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i0 = c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        xd_fp32_to_bf16_n(dst + i0, src + i0, (size_t)len);
    }
}

/* ---- compute mode -------------------------------------------------------- */

static xd_compute g_mode = XD_COMPUTE_FP32;

xd_compute xd_get_compute(void) { return g_mode; }

int xd_bf16_active(void) { return g_mode == XD_COMPUTE_BF16; }

#ifndef XD_HAVE_DNNL

int xd_set_compute(xd_compute mode) {
    if (mode == XD_COMPUTE_FP32) {
        g_mode = mode;
        return 0;
    }
    if (mode == XD_COMPUTE_BF16)
        return xd_err("bf16 compute: this build has no oneDNN (install libdnnl-dev and rebuild)");
    return xd_err("compute mode %d: unknown", (int)mode);
}
void xd_bf16_cache_begin(void) {}
void xd_bf16_cache_end(void) {}
void xd_bf16_release(void) {}
int xd_bf16_linear(float *y, const float *x, const float *W, int accumulate, int n, int in,
                   int out) {
    (void)y, (void)x, (void)W, (void)accumulate, (void)n, (void)in, (void)out;
    return -1;
}
int xd_bf16_linear_backward(float *dx, float *dW, const float *dy, const float *x,
                            const float *W, int n, int in, int out) {
    (void)dx, (void)dW, (void)dy, (void)x, (void)W, (void)n, (void)in, (void)out;
    return 0;
}

#else

/* ---- oneDNN matmul primitives, one per shape ------------------------------ */

static dnnl_engine_t g_eng;
static dnnl_stream_t g_strm;

/* C[M][N] (+)= A[M][K] · B[K][N]; A stored transposed (K×M) when ta, B when tb. */
typedef struct {
    int M, N, K, ta, tb, acc, nthr;
    dnnl_primitive_t p;
    dnnl_memory_t a, b, c;
} mm_prim;

static mm_prim *g_prims;
static int g_nprims, g_cap_prims;

static int engine_init(void) {
    if (g_eng) return 0;
    if (dnnl_engine_create(&g_eng, dnnl_cpu, 0) != dnnl_success) {
        g_eng = NULL;
        return xd_err("bf16 compute: oneDNN cannot create a CPU engine");
    }
    if (dnnl_stream_create(&g_strm, g_eng, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(g_eng);
        g_eng = NULL;
        return xd_err("bf16 compute: oneDNN cannot create a stream");
    }
    return 0;
}

static void prim_destroy(mm_prim *q) {
    if (q->p) dnnl_primitive_destroy(q->p);
    if (q->a) dnnl_memory_destroy(q->a);
    if (q->b) dnnl_memory_destroy(q->b);
    if (q->c) dnnl_memory_destroy(q->c);
}

static mm_prim *prim_get(int M, int N, int K, int ta, int tb, int acc) {
    int nthr = omp_get_max_threads();
    for (int i = 0; i < g_nprims; i++) {
        mm_prim *q = &g_prims[i];
        if (q->M == M && q->N == N && q->K == K && q->ta == ta && q->tb == tb && q->acc == acc &&
            q->nthr == nthr)
            return q;
    }
    if (engine_init()) return NULL;
    if (g_nprims == g_cap_prims) {
        int cap = g_cap_prims ? 2 * g_cap_prims : 32;
        mm_prim *np = realloc(g_prims, (size_t)cap * sizeof *np);
        if (!np) return xd_err("bf16 compute: out of memory"), NULL;
        g_prims = np;
        g_cap_prims = cap;
    }
    mm_prim q = {M, N, K, ta, tb, acc, nthr, NULL, NULL, NULL, NULL};
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_dims_t da = {M, K}, db = {K, N}, dc = {M, N};
    dnnl_dims_t sa = {ta ? 1 : K, ta ? M : 1}, sb = {tb ? 1 : N, tb ? K : 1}, sc = {N, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&ma, 2, da, dnnl_bf16, sa) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&mb, 2, db, dnnl_bf16, sb) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&mc, 2, dc, dnnl_f32, sc) == dnnl_success &&
             dnnl_matmul_desc_init(&md, &ma, &mb, NULL, &mc) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && acc)
        ok = dnnl_post_ops_create(&po) == dnnl_success &&
             dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &md, attr, g_eng, NULL) == dnnl_success &&
         dnnl_primitive_create(&q.p, pd) == dnnl_success &&
         dnnl_memory_create(&q.a, &ma, g_eng, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&q.b, &mb, g_eng, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&q.c, &mc, g_eng, DNNL_MEMORY_NONE) == dnnl_success;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        prim_destroy(&q);
        return xd_err("bf16 compute: oneDNN has no bf16 matmul for %dx%dx%d on this CPU", M, N, K),
               NULL;
    }
    g_prims[g_nprims] = q;
    return &g_prims[g_nprims++];
}

static int prim_run(mm_prim *q, const uint16_t *A, const uint16_t *B, float *C) {
    if (dnnl_memory_set_data_handle(q->a, (void *)A) != dnnl_success ||
        dnnl_memory_set_data_handle(q->b, (void *)B) != dnnl_success ||
        dnnl_memory_set_data_handle(q->c, C) != dnnl_success)
        return xd_err("bf16 compute: oneDNN rejected a buffer");
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, q->a}, {DNNL_ARG_WEIGHTS, q->b}, {DNNL_ARG_DST, q->c}};
    if (dnnl_primitive_execute(q->p, g_strm, 3, args) != dnnl_success ||
        dnnl_stream_wait(g_strm) != dnnl_success)
        return xd_err("bf16 compute: oneDNN matmul %dx%dx%d failed", q->M, q->N, q->K);
    return 0;
}

int xd_set_compute(xd_compute mode) {
    if (mode == XD_COMPUTE_FP32) {
        g_mode = mode;
        xd_bf16_release();
        return 0;
    }
    if (mode != XD_COMPUTE_BF16) return xd_err("compute mode %d: unknown", (int)mode);
    /* make sure this CPU has a bf16 matmul before promising one */
    if (!prim_get(16, 16, 32, 0, 1, 0)) return -1;
    g_mode = mode;
    return 0;
}

/* ---- bf16 buffers: scratch for activations, cached copies of weights ---- */

static uint16_t *g_scr[2];
static size_t g_scr_n[2];

static uint16_t *scratch(int slot, size_t n) {
    if (g_scr_n[slot] < n) {
        free(g_scr[slot]);
        g_scr[slot] = malloc(n * sizeof(uint16_t));
        g_scr_n[slot] = g_scr[slot] ? n : 0;
        if (!g_scr[slot]) return xd_err("bf16 compute: out of memory"), NULL;
    }
    return g_scr[slot];
}

typedef struct {
    const float *w;
    size_t n;
    uint16_t *h;
    int valid; /* converted in the current scope */
} w_entry;

static w_entry *g_w;
static int g_nw, g_cap_w, g_scope;

void xd_bf16_cache_begin(void) {
    /* copies not used in the last scope belong to weights that are gone or
     * idle: free them; keep the others' memory for this scope */
    int j = 0;
    for (int i = 0; i < g_nw; i++) {
        if (!g_w[i].valid) {
            free(g_w[i].h);
            continue;
        }
        g_w[j] = g_w[i];
        g_w[j++].valid = 0;
    }
    g_nw = j;
    g_scope = 1;
}

/* the copies stay allocated (and marked used) until the next begin */
void xd_bf16_cache_end(void) { g_scope = 0; }

void xd_bf16_release(void) {
    for (int i = 0; i < g_nw; i++) free(g_w[i].h);
    free(g_w);
    g_w = NULL;
    g_nw = g_cap_w = g_scope = 0;
    for (int s = 0; s < 2; s++) {
        free(g_scr[s]);
        g_scr[s] = NULL;
        g_scr_n[s] = 0;
    }
    for (int i = 0; i < g_nprims; i++) prim_destroy(&g_prims[i]);
    free(g_prims);
    g_prims = NULL;
    g_nprims = g_cap_prims = 0;
    if (g_strm) dnnl_stream_destroy(g_strm);
    if (g_eng) dnnl_engine_destroy(g_eng);
    g_strm = NULL;
    g_eng = NULL;
}

/* bf16 copy of the weight matrix W (n floats): the scope's cached copy, or
 * a fresh conversion into scratch slot `slot` outside a scope. */
static const uint16_t *weight_bf16(const float *W, size_t n, int slot) {
    if (g_scope) {
        for (int i = 0; i < g_nw; i++)
            if (g_w[i].w == W && g_w[i].n == n) {
                if (!g_w[i].valid) {
                    xd_bf16_from_f32(g_w[i].h, W, (int64_t)n);
                    g_w[i].valid = 1;
                }
                return g_w[i].h;
            }
        if (g_nw == g_cap_w) {
            int cap = g_cap_w ? 2 * g_cap_w : 64;
            w_entry *nw = realloc(g_w, (size_t)cap * sizeof *nw);
            if (!nw) return xd_err("bf16 compute: out of memory"), NULL;
            g_w = nw;
            g_cap_w = cap;
        }
        uint16_t *h = malloc(n * sizeof(uint16_t));
        if (h) {
            xd_bf16_from_f32(h, W, (int64_t)n);
            g_w[g_nw++] = (w_entry){W, n, h, 1};
            return h;
        }
        /* no memory for a cached copy: convert into scratch */
    }
    uint16_t *h = scratch(slot, n);
    if (h) xd_bf16_from_f32(h, W, (int64_t)n);
    return h;
}

int xd_bf16_linear(float *y, const float *x, const float *W, int accumulate, int n, int in,
                   int out) {
    mm_prim *q = prim_get(n, out, in, 0, 1, accumulate != 0);
    if (!q) return -1;
    uint16_t *xh = scratch(0, (size_t)n * in);
    if (!xh) return -1;
    const uint16_t *wh = weight_bf16(W, (size_t)out * in, 1);
    if (!wh) return -1;
    xd_bf16_from_f32(xh, x, (int64_t)n * in);
    return prim_run(q, xh, wh, y);
}

int xd_bf16_linear_backward(float *dx, float *dW, const float *dy, const float *x,
                            const float *W, int n, int in, int out) {
    /* primitives and buffers first: what can fail fails before anything is
     * written (oneDNN checks its arguments before it computes) */
    mm_prim *qx = dx ? prim_get(n, in, out, 0, 0, 1) : NULL;
    mm_prim *qw = dW ? prim_get(out, in, n, 1, 0, 1) : NULL;
    uint16_t *dyh = scratch(0, (size_t)n * out);
    if ((dx && !qx) || (dW && !qw) || !dyh || (dW && !scratch(1, (size_t)n * in))) return 0;
    const uint16_t *wh = dx ? weight_bf16(W, (size_t)out * in, 1) : NULL;
    if (dx && !wh) return 0;
    xd_bf16_from_f32(dyh, dy, (int64_t)n * out);
    int done = 0;
    if (dx && !prim_run(qx, dyh, wh, dx)) done |= 1;
    if (dW) {
        uint16_t *xh = scratch(1, (size_t)n * in); /* allocated above: cannot fail */
        xd_bf16_from_f32(xh, x, (int64_t)n * in);
        /* dW[out][in] += dyᵀ · x: dy[n][out] read as its transpose */
        if (!prim_run(qw, dyh, xh, dW)) done |= 2;
    }
    return done;
}

#endif
