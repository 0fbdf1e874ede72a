/* Training forward/backward of the hybrid mixer (mixer_train.h). */
#include "mixer_train.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/hybrid_ops.h"
#include "kernels/kernels.h"
#include "kernels/delta.h"
#include "kernels/mlstm.h"
#include "kernels/train_ops.h"
#include "model/student.h"

static float *take(float *base, size_t *cur, size_t n) {
    float *p = base ? base + *cur : NULL;
    *cur += n;
    return p;
}

/* Layer l's entries of cfg.global_heads (sorted by layer): [*i0, *i1). */
static void layer_globals(const xd_config *c, int l, int *i0, int *i1) {
    int i = 0;
    while (i < c->n_global_heads && c->global_heads[i].layer < l) i++;
    *i0 = i;
    while (i < c->n_global_heads && c->global_heads[i].layer == l) i++;
    *i1 = i;
}

/* Floats of the recurrent branch's cache for one row of T tokens (mLSTM or delta rule). */
static int64_t memory_cache_floats(const xd_config *c, int64_t T, const xd_mlstm_cfg *mc) {
    return c->memory_rule == XD_MEMORY_DELTA ? xd_delta_cache_floats(T, mc)
                                             : xd_mlstm_cache_floats(T, mc);
}

size_t xd_mixer_acts_layout(const xd_config *c, int layer, int B, int T, xd_mixer_acts *a,
                            float *base) {
    size_t BT = (size_t)B * T, nh = (size_t)c->n_head, hd = (size_t)c->head_dim;
    int g0, g1;
    layer_globals(c, layer, &g0, &g1);
    size_t qd = nh * hd, kvd = (size_t)c->n_kv_head * hd, cur = 0;
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    a->qp = take(base, &cur, BT * qd);
    a->kp = take(base, &cur, BT * kvd);
    a->phq = take(base, &cur, BT * nh * 2 * hd);
    a->phk = take(base, &cur, BT * nh * 2 * hd);
    a->ve = take(base, &cur, BT * qd);
    a->ig_raw = take(base, &cur, BT * nh);
    a->fg_raw = take(base, &cur, BT * nh);
    a->ig = take(base, &cur, BT * nh);
    a->fg = take(base, &cur, BT * nh);
    a->hm = take(base, &cur, BT * qd);
    a->hs = take(base, &cur, BT * qd);
    a->o = take(base, &cur, BT * nh);
    a->cache = take(base, &cur, (size_t)B * (size_t)memory_cache_floats(c, T, &mc));
    a->probs = take(base, &cur, (size_t)B * nh * T * T);
    a->gprobs = take(base, &cur, (size_t)B * (size_t)(g1 - g0) * T * T);
    return cur;
}

/* Global heads (docs/design.md, "Global heads"): for row b, each run of layer l's global
 * heads that share a KV head g is one call of the training attention with window 0 (causal
 * within the document, the teacher's mask) over the gathered queries [T][nq·hd] and g's
 * keys/values [T][hd]. */
typedef struct {
    float *q, *k, *v, *o;       /* gathered q [T][nq·hd], k, v [T][hd], out / dout [T][nq·hd] */
    float *dq, *dk, *dv;        /* their gradients (backward) */
} gbuf;

static float *gbuf_alloc(gbuf *g, int T, int qd, int hd, int backward) {
    size_t Tq = (size_t)T * qd, Th = (size_t)T * hd;
    float *p = malloc((2 * Tq + 2 * Th + (backward ? Tq + 2 * Th : 0)) * sizeof(float));
    if (!p) return NULL;
    g->q = p;
    g->o = p + Tq;
    g->k = g->o + Tq;
    g->v = g->k + Th;
    g->dq = backward ? g->v + Th : NULL;
    g->dk = backward ? g->dq + Tq : NULL;
    g->dv = backward ? g->dk + Th : NULL;
    return p;
}

/* Copies rows [T] of heads heads[0..nq) (stride ld, head size hd) to dst [T][nq·hd], or back
 * (add: dst += ...). */
static void gather(float *dst, const float *src, int ld, const xd_head_ref *heads, int nq,
                   int T, int hd) {
    for (size_t t = 0; t < (size_t)T; t++)
        for (int r = 0; r < nq; r++)
            memcpy(dst + (t * nq + r) * hd, src + t * ld + (size_t)heads[r].head * hd,
                   (size_t)hd * sizeof(float));
}
static void scatter(float *dst, int ld, const float *src, const xd_head_ref *heads, int nq, int T,
                    int hd, int add) {
    for (size_t t = 0; t < (size_t)T; t++)
        for (int r = 0; r < nq; r++) {
            float *d = dst + t * ld + (size_t)heads[r].head * hd;
            const float *x = src + (t * nq + r) * hd;
            if (add)
                for (int i = 0; i < hd; i++) d[i] += x[i];
            else memcpy(d, x, (size_t)hd * sizeof(float));
        }
}
/* The KV head g's rows [T] of a [T][kvd] tensor (one head = the heads list {g·group}). */
static void gather_kv(float *dst, const float *src, int kvd, int g, int T, int hd) {
    for (size_t t = 0; t < (size_t)T; t++)
        memcpy(dst + t * hd, src + t * kvd + (size_t)g * hd, (size_t)hd * sizeof(float));
}
static void scatter_kv(float *dst, int kvd, const float *src, int g, int T, int hd) {
    for (size_t t = 0; t < (size_t)T; t++)
        for (int i = 0; i < hd; i++) dst[t * kvd + (size_t)g * hd + i] += src[t * hd + i];
}

/* Forward of layer l's global heads: their slices of att become the full attention. */
static int globals_forward(const xd_config *c, int l, xd_mixer_acts *a, const float *q,
                           const float *k, const float *v, const int32_t *doc_start, int B, int T,
                           float *att) {
    int g0, g1, nh = c->n_head, hd = c->head_dim, qd = nh * hd, kvd = c->n_kv_head * hd;
    int group = nh / c->n_kv_head;
    layer_globals(c, l, &g0, &g1);
    if (g0 == g1) return 0;
    gbuf w;
    float *mem = gbuf_alloc(&w, T, qd, hd, 0);
    if (!mem) return xd_err("global heads: out of memory for %d tokens", T);
    const xd_head_ref *gh = c->global_heads;
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        for (int i = g0; i < g1;) {
            int g = gh[i].head / group, j = i;
            while (j < g1 && gh[j].head / group == g) j++;
            gather(w.q, q + r * qd, qd, gh + i, j - i, T, hd);
            gather_kv(w.k, k + r * kvd, kvd, g, T, hd);
            gather_kv(w.v, v + r * kvd, kvd, g, T, hd);
            xd_attn_train_forward(w.o, a->gprobs + ((size_t)b * (g1 - g0) + (i - g0)) * T * T,
                                  w.q, w.k, w.v, T, j - i, 1, hd, doc_start ? doc_start + r : NULL,
                                  0, 0);
            scatter(att + r * qd, qd, w.o, gh + i, j - i, T, hd, 0);
            i = j;
        }
    }
    free(mem);
    return 0;
}

/* Backward of the global heads: datt's slices of layer l's global heads through their
 * attention into dq, dk, dv (each may be NULL). */
static int globals_backward(const xd_config *c, int l, const xd_mixer_acts *a, const float *datt,
                            const float *q, const float *k, const float *v, float *dq, float *dk,
                            float *dv, int B, int T) {
    int g0, g1, nh = c->n_head, hd = c->head_dim, qd = nh * hd, kvd = c->n_kv_head * hd;
    int group = nh / c->n_kv_head;
    layer_globals(c, l, &g0, &g1);
    if (g0 == g1 || (!dq && !dk && !dv)) return 0;
    gbuf w;
    float *mem = gbuf_alloc(&w, T, qd, hd, 1);
    if (!mem) return xd_err("global heads: out of memory for %d tokens", T);
    const xd_head_ref *gh = c->global_heads;
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        for (int i = g0; i < g1;) {
            int g = gh[i].head / group, j = i, nq;
            while (j < g1 && gh[j].head / group == g) j++;
            nq = j - i;
            gather(w.q, q + r * qd, qd, gh + i, nq, T, hd);
            gather(w.o, datt + r * qd, qd, gh + i, nq, T, hd);
            gather_kv(w.k, k + r * kvd, kvd, g, T, hd);
            gather_kv(w.v, v + r * kvd, kvd, g, T, hd);
            memset(w.dq, 0, ((size_t)T * nq * hd) * sizeof(float));
            memset(w.dk, 0, 2 * (size_t)T * hd * sizeof(float)); /* dk, dv */
            xd_attn_train_backward(dq ? w.dq : NULL, dk ? w.dk : NULL, dv ? w.dv : NULL, w.o,
                                   a->gprobs + ((size_t)b * (g1 - g0) + (i - g0)) * T * T, w.q,
                                   w.k, w.v, T, nq, 1, hd);
            if (dq) scatter(dq + r * qd, qd, w.dq, gh + i, nq, T, hd, 1);
            if (dk) scatter_kv(dk + r * kvd, kvd, w.dk, g, T, hd);
            if (dv) scatter_kv(dv + r * kvd, kvd, w.dv, g, T, hd);
            i = j;
        }
    }
    free(mem);
    return 0;
}

size_t xd_mixer_scratch_layout(const xd_config *c, int B, int T, xd_mixer_scratch *s, float *base) {
    size_t BT = (size_t)B * T, nh = (size_t)c->n_head, hd = (size_t)c->head_dim, cur = 0;
    s->dhm = take(base, &cur, BT * nh * hd);
    s->dhs = take(base, &cur, BT * nh * hd);
    s->dphq = take(base, &cur, BT * nh * 2 * hd);
    s->dphk = take(base, &cur, BT * nh * 2 * hd);
    s->dve = take(base, &cur, BT * nh * hd);
    s->dig = take(base, &cur, BT * nh);
    s->dfg = take(base, &cur, BT * nh);
    s->dig_raw = take(base, &cur, BT * nh);
    s->dfg_raw = take(base, &cur, BT * nh);
    s->dmix = take(base, &cur, c->n_global_heads ? BT * nh * hd : 0);
    return cur;
}

int xd_mixer_train_forward(const xd_config *c, int layer, const xd_layer *L, xd_mixer_acts *a,
                           const float *h1, const float *q, const float *k, const float *v,
                           const int32_t *doc_start, int B, int T, float *att) {
    int nh = c->n_head, nkv = c->n_kv_head, hd = c->head_dim;
    int qd = nh * hd, kvd = nkv * hd, dphi = 2 * hd, BT = B * T;
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    int64_t cf = memory_cache_floats(c, T, &mc);
    for (int b = 0; b < B; b++) { /* SWA branch */
        size_t r = (size_t)b * T;
        xd_attn_train_forward(a->hs + r * qd, a->probs + (size_t)b * nh * T * T, q + r * qd,
                              k + r * kvd, v + r * kvd, T, nh, nkv, hd,
                              doc_start ? doc_start + r : NULL, c->window, c->sinks);
    }
    xd_student_mlstm_inputs(c, L, BT, h1, q, k, v, a->ig_add, a->fg_add, a->phq, a->phk, a->ve,
                            a->ig_raw, a->fg_raw, a->ig, a->fg);
    for (int b = 0; b < B; b++) { /* mLSTM branch */
        size_t r = (size_t)b * T;
        xd_mlstm_in in = {a->phq + r * nh * dphi, a->phk + r * nh * dphi, a->ve + r * qd,
                          a->ig + r * nh, a->fg + r * nh, doc_start ? doc_start + r : NULL};
        int rc = c->memory_rule == XD_MEMORY_DELTA
                     ? xd_delta_forward(a->hm + r * qd, a->cache + (size_t)b * cf, NULL, &in,
                                        NULL, T, &mc)
                     : xd_mlstm_chunk_forward(a->hm + r * qd, a->cache + (size_t)b * cf, NULL,
                                              &in, NULL, T, &mc);
        if (rc) return -1;
    }
    xd_mix_forward(att, a->o, a->hm, a->hs, a->qp, qd, a->kp, kvd, v, kvd, L->w_mix, L->b_mix,
                   BT, nh, nkv, hd);
    if (c->exact_in_window) {
        xd_mix_exact_window(att, a->o, a->hs, B, T, nh, hd, 0, doc_start,
                            (int64_t)c->sinks + c->window);
    }
    /* global heads: their output is the full attention, not the mix */
    return globals_forward(c, layer, a, q, k, v, doc_start, B, T, att);
}

int xd_mixer_train_backward(const xd_config *c, int layer, const xd_layer *L, xd_layer *G,
                            const xd_mixer_acts *a, const xd_mixer_scratch *s,
                            const xd_mixer_dinputs *din, const float *datt, const float *h1,
                            const float *q, const float *k, const float *v,
                            const int32_t *doc_start, int B, int T) {
    int nh = c->n_head, nkv = c->n_kv_head, hd = c->head_dim, d = c->d_model;
    int qd = nh * hd, kvd = nkv * hd, dphi = 2 * hd, group = nh / nkv, BT = B * T;
    size_t nq = (size_t)BT * qd, ng = (size_t)BT * nh, nphi = (size_t)BT * nh * dphi;
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    int64_t cf = memory_cache_floats(c, T, &mc);
    int want_qkv = din->dq || din->dk || din->dv;

    /* global heads: their gradient goes through their attention only; the mix (and so
     * both branches) sees it zeroed */
    int g0, g1;
    layer_globals(c, layer, &g0, &g1);
    if (g1 > g0) {
        if (globals_backward(c, layer, a, datt, q, k, v, din->dq, din->dk, din->dv, B, T))
            return -1;
        memcpy(s->dmix, datt, nq * sizeof(float));
        for (size_t t = 0; t < (size_t)BT; t++)
            for (int i = g0; i < g1; i++)
                memset(s->dmix + t * qd + (size_t)c->global_heads[i].head * hd, 0,
                       (size_t)hd * sizeof(float));
        datt = s->dmix;
    }
    /* mix */
    memset(s->dhm, 0, nq * sizeof(float));
    if (want_qkv) memset(s->dhs, 0, nq * sizeof(float));
    xd_mix_backward(s->dhm, want_qkv ? s->dhs : NULL, din->dqp, din->dkp, din->dv, G->w_mix,
                    G->b_mix, datt, a->o, a->hm, a->hs, a->qp, qd, a->kp, kvd, v, kvd, L->w_mix,
                    BT, nh, nkv, hd);
    /* mLSTM */
    memset(s->dphq, 0, nphi * sizeof(float));
    memset(s->dphk, 0, nphi * sizeof(float));
    memset(s->dig, 0, ng * sizeof(float));
    memset(s->dfg, 0, ng * sizeof(float));
    if (din->dv) memset(s->dve, 0, nq * sizeof(float));
    for (int b = 0; b < B; b++) {
        size_t r = (size_t)b * T;
        xd_mlstm_in in = {a->phq + r * nh * dphi, a->phk + r * nh * dphi, a->ve + r * qd,
                          a->ig + r * nh, a->fg + r * nh, doc_start ? doc_start + r : NULL};
        xd_mlstm_grads g = {s->dphq + r * nh * dphi, s->dphk + r * nh * dphi,
                            din->dv ? s->dve + r * qd : NULL, s->dig + r * nh, s->dfg + r * nh};
        int rc = c->memory_rule == XD_MEMORY_DELTA
                     ? xd_delta_backward(&g, NULL, s->dhm + r * qd, NULL,
                                         a->cache + (size_t)b * cf, &in, NULL, T, &mc)
                     : xd_mlstm_chunk_backward(&g, NULL, s->dhm + r * qd, NULL, a->hm + r * qd,
                                               a->cache + (size_t)b * cf, &in, NULL, T, &mc);
        if (rc) return -1;
    }
    if (din->dv) /* values per query head → their KV group */
        for (size_t t = 0; t < (size_t)BT; t++)
            for (int h = 0; h < nh; h++) {
                float *dst = din->dv + t * kvd + (size_t)(h / group) * hd;
                const float *src = s->dve + (t * nh + h) * hd;
                for (int i = 0; i < hd; i++) dst[i] += src[i];
            }
    /* gates */
    memset(s->dig_raw, 0, ng * sizeof(float));
    memset(s->dfg_raw, 0, ng * sizeof(float));
    xd_softcap_backward(s->dig_raw, s->dig, a->ig_raw, (int64_t)ng, c->gate_softcap);
    xd_softcap_backward(s->dfg_raw, s->dfg, a->fg_raw, (int64_t)ng, c->gate_softcap);
    xd_linear_backward(din->dh1, G->w_ig, G->b_ig, s->dig_raw, h1, L->w_ig, BT, d, nh);
    xd_linear_backward(din->dh1, G->w_fg, G->b_fg, s->dfg_raw, h1, L->w_fg, BT, d, nh);
    /* feature maps */
    if (xd_hedgehog_backward(din->dq, G->fmq_A, G->fmq_b, s->dphq, a->phq, q, qd, L->fmq_A, BT,
                             nh, nh, hd) ||
        xd_hedgehog_backward(din->dk, G->fmk_A, G->fmk_b, s->dphk, a->phk, k, kvd, L->fmk_A, BT,
                             nh, nkv, hd))
        return -1;
    /* SWA */
    if (din->dq || din->dk || din->dv)
        for (int b = 0; b < B; b++) {
            size_t r = (size_t)b * T;
            xd_attn_train_backward(din->dq ? din->dq + r * qd : NULL,
                                   din->dk ? din->dk + r * kvd : NULL,
                                   din->dv ? din->dv + r * kvd : NULL, s->dhs + r * qd,
                                   a->probs + (size_t)b * nh * T * T, q + r * qd, k + r * kvd,
                                   v + r * kvd, T, nh, nkv, hd);
        }
    return 0;
}
