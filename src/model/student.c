/* Student inference: the hybrid mixer and its decoding state (docs/design.md,
 * "Student layer", "Decoding state").
 *
 * State per layer, constant in the sequence length: the sink keys/values
 * (positions 0 … S−1), a window buffer of 2W rows holding the most recent
 * keys/values of positions ≥ S contiguously (so that the attention kernel
 * reads them in place), and the mLSTM state (C, n, m) of every head. A student
 * with global heads ("Global heads") also keeps every key/value of the KV heads
 * they read, the only part that grows with the length. A student with a sparse
 * cache (cfg.sparse_cache, "Sparse cache") keeps, per layer, up to that many rows
 * that left the window, after the sinks in the sink buffers. */
#include "student.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/f16.h"
#include "kernels/delta.h"
#include "kernels/hybrid_ops.h"
#include "kernels/kernels.h"
#include "kernels/mlstm.h"

/* The (layer, KV head) pairs whose keys/values the global heads read (docs/design.md,
 * "Global heads"), one per run of cfg.global_heads with the same layer and KV head: the
 * list is sorted by (layer, head), so the query heads of one pair are adjacent. For pair b
 * (counting from 0), first[b] … first[b+1]−1 are its entries of the list. Returns the
 * number of pairs; first (n_global_heads + 1 entries) may be NULL. */
static int gkv_pairs(const xd_config *c, int *first) {
    int group = c->n_head / c->n_kv_head, nb = 0;
    const xd_head_ref *gh = c->global_heads;
    for (int i = 0; i < c->n_global_heads; i++)
        if (!i || gh[i].layer != gh[i - 1].layer || gh[i].head / group != gh[i - 1].head / group) {
            if (first) first[nb] = i;
            nb++;
        }
    if (first) first[nb] = c->n_global_heads;
    return nb;
}

/* Bytes per stored key row and value row (one position) of a global KV head: the row
 * types of the state's dtype (k8v4: int8 keys, int4 values). */
static size_t gkv_krow(int dtype, int hd) { return xd_kv_row_bytes(xd_kv_key_type(dtype), hd); }
static size_t gkv_vrow(int dtype, int hd) { return xd_kv_row_bytes(xd_kv_value_type(dtype), hd); }
/* A key row and a value row: the bytes one position adds to a pair. */
static size_t gkv_pos_bytes(int dtype, int hd) { return gkv_krow(dtype, hd) + gkv_vrow(dtype, hd); }

/* Grows every global key/value buffer to at least `rows` rows (doubling). On failure the
 * buffers keep their contents and kv->gcap its value. */
static int gkv_reserve(xd_kv *kv, int64_t rows) {
    if (rows <= kv->gcap) return 0;
    int64_t cap = kv->gcap > 16 ? kv->gcap : 16;
    while (cap < rows) cap *= 2;
    size_t kbytes = (size_t)cap * gkv_krow(kv->gkv_dtype, kv->head_dim);
    size_t vbytes = (size_t)cap * gkv_vrow(kv->gkv_dtype, kv->head_dim);
    for (int b = 0; b < kv->n_gkv; b++) {
        void *k = realloc(kv->gk[b], kbytes);
        if (k) kv->gk[b] = k;
        void *v = k ? realloc(kv->gv[b], vbytes) : NULL;
        if (v) kv->gv[b] = v;
        if (!k || !v)
            return xd_err("student state: cannot grow the global heads' keys/values to %lld "
                          "positions (%.1f MB)", (long long)cap,
                          (double)kv->n_gkv * (double)(kbytes + vbytes) / 1e6);
    }
    kv->gcap = cap;
    return 0;
}

static size_t layer_mlstm_floats(const xd_kv *kv) {
    size_t nh = (size_t)kv->n_head, dphi = (size_t)kv->dphi, hd = (size_t)kv->head_dim;
    return nh * dphi * hd + nh * dphi + nh;
}

/* One write per 4 KiB page. */
static void touch_pages(void *p, size_t bytes) {
    volatile char *c = (volatile char *)p;
    for (size_t i = 0; i < bytes; i += 4096) c[i] = 0;
}

/* Bytes of one element of the window buffers: bfloat16 or fp32. */
static size_t win_eb(const xd_kv *kv) { return kv->dtype == XD_KV_BF16 ? 2 : 4; }

int xd_student_kv_alloc(xd_kv *kv, const xd_model *m) {
    const xd_config *c = &m->cfg;
    if (kv->dtype != XD_KV_F32 && kv->dtype != XD_KV_BF16)
        return xd_err("student state: the window keeps float32 or bfloat16 rows (type %d asked; "
                      "global heads take their own type, convert --global-kv)", kv->dtype);
    kv->student = 1;
    kv->window = c->window;
    kv->sinks = c->sinks;
    kv->n_head = c->n_head;
    kv->head_dim = c->head_dim;
    kv->dphi = 2 * c->head_dim;
    size_t L = (size_t)c->n_layer, kvd = (size_t)kv->kv_dim;
    size_t nh = (size_t)c->n_head, dphi = (size_t)kv->dphi, hd = (size_t)c->head_dim;
    kv->scap = c->sparse_cache;
    size_t ns = L * (size_t)(c->sinks + kv->scap) * kvd, nw = L * 2 * (size_t)c->window * kvd;
    kv->ccount = calloc(L, sizeof(int));
    kv->cscore = malloc((L * (size_t)kv->scap + 1) * sizeof(float));
    kv->cexact = malloc(L * sizeof(int64_t));
    if (!kv->ccount || !kv->cscore || !kv->cexact) return xd_err("student state: out of memory");
    kv->sk = malloc((ns ? ns : 1) * sizeof(float));
    kv->sv = malloc((ns ? ns : 1) * sizeof(float));
    kv->rk = malloc(nw * win_eb(kv));
    kv->rv = malloc(nw * win_eb(kv));
    kv->C = malloc(L * nh * dphi * hd * sizeof(float));
    kv->n = malloc(L * nh * dphi * sizeof(float));
    kv->m = malloc(L * nh * sizeof(float));
    if (!kv->sk || !kv->sv || !kv->rk || !kv->rv || !kv->C || !kv->n || !kv->m)
        return xd_err("student state: cannot allocate %.1f MB (window %d, sinks %d)",
                      ((double)(2 * ns + L * layer_mlstm_floats(kv)) * 4 +
                       (double)(2 * nw * win_eb(kv))) / 1e6, c->window,
                      c->sinks);
    /* take the state's memory in full now, so the process does not grow while the window
     * buffers fill (RSS stays flat); volatile writes, as a memset(0) after malloc may be
     * turned into a calloc that touches nothing */
    touch_pages(kv->sk, (ns ? ns : 1) * sizeof(float));
    touch_pages(kv->sv, (ns ? ns : 1) * sizeof(float));
    touch_pages(kv->rk, nw * win_eb(kv));
    touch_pages(kv->rv, nw * win_eb(kv));
    kv->n_gkv = gkv_pairs(c, NULL);
    kv->gkv_dtype = c->global_kv_dtype;
    if (kv->n_gkv) { /* global heads: growable, max_tokens rows to begin with */
        kv->gk = calloc((size_t)kv->n_gkv, sizeof *kv->gk);
        kv->gv = calloc((size_t)kv->n_gkv, sizeof *kv->gv);
        if (!kv->gk || !kv->gv) return xd_err("student state: out of memory");
        if (gkv_reserve(kv, kv->max_tokens)) return -1;
    }
    xd_student_kv_reset(kv);
    return 0;
}

void xd_student_kv_free(xd_kv *kv) {
    free(kv->sk); free(kv->sv); free(kv->rk); free(kv->rv);
    free(kv->C); free(kv->n); free(kv->m);
    free(kv->mx_scratch);
    free(kv->ccount); free(kv->cscore); free(kv->cexact);
    for (int b = 0; b < kv->n_gkv; b++) {
        if (kv->gk) free(kv->gk[b]);
        if (kv->gv) free(kv->gv[b]);
    }
    free(kv->gk);
    free(kv->gv);
}

void xd_student_kv_reset(xd_kv *kv) {
    size_t L = (size_t)kv->n_layer, nh = (size_t)kv->n_head, dphi = (size_t)kv->dphi;
    memset(kv->C, 0, L * nh * dphi * (size_t)kv->head_dim * sizeof(float));
    memset(kv->n, 0, L * nh * dphi * sizeof(float));
    memset(kv->m, 0, L * nh * sizeof(float));
    kv->wcount = 0;
    kv->wstart = kv->sinks;
    if (kv->ccount) memset(kv->ccount, 0, L * sizeof(int));
    for (size_t l = 0; kv->cexact && l < L; l++) kv->cexact[l] = INT64_MAX;
    kv->cpos = kv->sinks;
}

int xd_student_kv_copy(xd_kv *dst, const xd_kv *src) {
    if (dst->window != src->window || dst->sinks != src->sinks || dst->n_head != src->n_head ||
        dst->dphi != src->dphi || dst->head_dim != src->head_dim || dst->n_gkv != src->n_gkv ||
        dst->gkv_dtype != src->gkv_dtype || dst->scap != src->scap || dst->dtype != src->dtype)
        return xd_err("student state copy: the two states belong to different students");
    if (gkv_reserve(dst, src->pos)) return -1;
    for (int b = 0; b < src->n_gkv; b++) { /* global heads: positions 0 … pos−1 */
        memcpy(dst->gk[b], src->gk[b], (size_t)src->pos * gkv_krow(src->gkv_dtype, src->head_dim));
        memcpy(dst->gv[b], src->gv[b], (size_t)src->pos * gkv_vrow(src->gkv_dtype, src->head_dim));
    }
    size_t L = (size_t)src->n_layer, kvd = (size_t)src->kv_dim, nh = (size_t)src->n_head;
    size_t ns = L * (size_t)(src->sinks + src->scap) * kvd, nw = L * 2 * (size_t)src->window * kvd;
    size_t dphi = (size_t)src->dphi, hd = (size_t)src->head_dim;
    memcpy(dst->ccount, src->ccount, L * sizeof(int));
    memcpy(dst->cscore, src->cscore, L * (size_t)src->scap * sizeof(float));
    memcpy(dst->cexact, src->cexact, L * sizeof(int64_t));
    dst->cpos = src->cpos;
    memcpy(dst->sk, src->sk, ns * sizeof(float));
    memcpy(dst->sv, src->sv, ns * sizeof(float));
    memcpy(dst->rk, src->rk, nw * win_eb(src));
    memcpy(dst->rv, src->rv, nw * win_eb(src));
    memcpy(dst->C, src->C, L * nh * dphi * hd * sizeof(float));
    memcpy(dst->n, src->n, L * nh * dphi * sizeof(float));
    memcpy(dst->m, src->m, L * nh * sizeof(float));
    dst->wcount = src->wcount;
    dst->wstart = src->wstart;
    return 0;
}

/* docs/design.md, "Decoding state": the constant part (sinks, the sparse cache's rows and
 * scores, windows, mLSTM) plus a key and a value row (rb bytes together: gkv_pos_bytes of
 * the global_kv_dtype) per position and global (layer, KV head) pair. */
static size_t state_bytes(size_t L, size_t kvd, size_t S, size_t SC, size_t W, size_t web,
                          size_t mlstm, size_t n_gkv, size_t rb, int64_t len) {
    return 4 * L * (2 * (S + SC) * kvd + SC + mlstm) + web * L * 4 * W * kvd +
           n_gkv * rb * (size_t)len;
}

size_t xd_student_kv_bytes(const xd_kv *kv) {
    return state_bytes((size_t)kv->n_layer, (size_t)kv->kv_dim, (size_t)kv->sinks,
                       (size_t)kv->scap, (size_t)kv->window, win_eb(kv), layer_mlstm_floats(kv),
                       (size_t)kv->n_gkv,
                       gkv_pos_bytes(kv->gkv_dtype, kv->head_dim), kv->pos);
}

size_t xd_student_state_bytes(const xd_config *c, int64_t len) {
    size_t nh = (size_t)c->n_head, hd = (size_t)c->head_dim, dphi = 2 * hd;
    return state_bytes((size_t)c->n_layer, (size_t)c->n_kv_head * hd, (size_t)c->sinks,
                       (size_t)c->sparse_cache, (size_t)c->window, 4, nh * dphi * hd + nh * dphi + nh,
                       (size_t)gkv_pairs(c, NULL), gkv_pos_bytes(c->global_kv_dtype, (int)hd),
                       len < 0 ? 0 : len);
}

int xd_student_pairs_within(const xd_config *t, const xd_student_opts *o, double frac,
                            int64_t len) {
    if (!(frac > 0 && frac <= 1) || len < 1)
        return xd_err("state budget: %g of the teacher's KV cache at %lld tokens (expected a "
                      "fraction in (0, 1] and a length ≥ 1)", frac, (long long)len);
    xd_config c = *t;
    c.window = o->window;
    c.sinks = o->sinks;
    c.global_kv_dtype = o->global_kv_dtype;
    c.sparse_cache = o->sparse_cache;
    c.n_global_heads = 0;
    size_t hd = (size_t)c.head_dim, kvd = (size_t)c.n_kv_head * hd;
    double budget = frac * 4.0 * 2.0 * (double)c.n_layer * (double)kvd * (double)len;
    double base = (double)xd_student_state_bytes(&c, len);
    double per = (double)gkv_pos_bytes(c.global_kv_dtype, (int)hd) * (double)len;
    if (base > budget)
        return xd_err("state budget: the student's constant state (%.1f MiB: sinks, windows, "
                      "mLSTM) alone exceeds %g of the teacher's KV cache at %lld tokens "
                      "(%.1f MiB)", base / 1048576, frac, (long long)len, budget / 1048576);
    double k = floor((budget - base) / per);
    int all = c.n_layer * c.n_kv_head;
    return k > all ? all : (int)k;
}

void xd_student_plan_make(xd_student_plan *p, const xd_kv *kv, int n) {
    int64_t W = kv->window, S = kv->sinks, pos0 = kv->pos;
    p->pos0 = pos0;
    p->n = n;
    int64_t first = pos0 > S ? pos0 : S; /* first new position ≥ S */
    p->na = pos0 + n > first ? pos0 + n - first : 0;
    p->keep = kv->wcount;
    if (p->keep + p->na > 2 * W) p->keep = kv->wcount < W - 1 ? kv->wcount : W - 1;
    p->use_temp = p->keep + p->na > 2 * W;
}

void xd_student_kv_commit(xd_kv *kv, const xd_student_plan *p) {
    int64_t W = kv->window, total = p->keep + p->na;
    if (p->pos0 + p->n - W + 1 > kv->cpos) kv->cpos = p->pos0 + p->n - W + 1;
    if (p->keep < kv->wcount) kv->wstart += kv->wcount - p->keep;
    kv->wcount = total;
    if (p->use_temp) { /* the buffer got the newest W rows */
        kv->wstart += total - W;
        kv->wcount = W;
    }
}

/* Copies rows [from, from+count) of a buffer of rb-byte rows to the front. */
static void move_front(void *b, int64_t from, int64_t count, size_t rb) {
    if (from > 0 && count > 0)
        memmove(b, (char *)b + (size_t)from * rb, (size_t)count * rb);
}

/* x rounded to bfloat16 and back (the values a bfloat16 window holds), n of them. */
static void bf16_round(float *dst, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = xd_bf16_to_fp32(xd_fp32_to_bf16(x[i]));
}

/* The SWA branch's keys/values for one call: the window buffer's kept rows followed by the
 * call's new rows at positions ≥ S, rows [0, total) holding positions r0 … . As fp32 rows
 * rk, rv: the layer's window buffer itself (fp32 state), or a temporary run tk, tv when they
 * do not fit (the plan's use_temp: swa_finish keeps its newest W) or when a bfloat16 window
 * serves several queries (widened). One query of a bfloat16 window reads the buffer in place
 * (rk = NULL; bk, bv). */
typedef struct {
    float *rk, *rv, *tk, *tv;
    const void *bk, *bv;
    int64_t r0, total;
    int ns; /* sinks held after the call's new ones (< S only while the sinks fill) */
} swa_rows;

/* Stores the call's new keys/values in layer l's state (sinks, window buffer) and lays out
 * the rows the call's queries attend. A bfloat16 window stores the new rows rounded, and
 * every query attends them as stored. */
static int swa_stage(const xd_config *c, xd_kv *kv, int l, const xd_student_plan *p,
                     const float *k, const float *v, swa_rows *r) {
    int kvd = kv->kv_dim, n = p->n, bf = kv->dtype == XD_KV_BF16;
    int64_t S = c->sinks, W = c->window, pos0 = p->pos0, SC = kv->scap;
    size_t rb = (size_t)kvd * win_eb(kv), fb = (size_t)kvd * sizeof(float);
    float *sk = kv->sk + (size_t)l * (S + SC) * kvd, *sv = kv->sv + (size_t)l * (S + SC) * kvd;
    char *wk = (char *)kv->rk + (size_t)l * 2 * W * rb, *wv = (char *)kv->rv + (size_t)l * 2 * W * rb;
    for (int64_t t = pos0; t < pos0 + n && t < S; t++) { /* new sink positions */
        memcpy(sk + t * kvd, k + (t - pos0) * kvd, fb);
        memcpy(sv + t * kvd, v + (t - pos0) * kvd, fb);
    }
    r->ns = (int)(pos0 + n < S ? pos0 + n : S);
    int64_t off = n - p->na, keep = p->keep; /* off: the first new row at a position ≥ S */
    move_front(wk, kv->wcount - keep, keep, rb);
    move_front(wv, kv->wcount - keep, keep, rb);
    r->r0 = keep ? kv->wstart + kv->wcount - keep : pos0 + off;
    r->total = keep + p->na;
    r->rk = r->rv = r->tk = r->tv = NULL;
    r->bk = r->bv = NULL;
    if (bf && !p->use_temp) { /* the new rows into the buffer */
        xd_fp32_to_bf16_n(wk + (size_t)keep * rb, k + off * kvd, (size_t)(p->na * kvd));
        xd_fp32_to_bf16_n(wv + (size_t)keep * rb, v + off * kvd, (size_t)(p->na * kvd));
        if (n == 1) { /* read in place */
            r->bk = wk, r->bv = wv;
            return 0;
        }
    }
    if (!bf && !p->use_temp) {
        r->rk = (float *)wk, r->rv = (float *)wv;
        memcpy(r->rk + keep * kvd, k + off * kvd, (size_t)p->na * fb);
        memcpy(r->rv + keep * kvd, v + off * kvd, (size_t)p->na * fb);
        return 0;
    }
    /* a temporary fp32 run: the kept rows, then the new ones (bf16: as stored) */
    r->tk = malloc((size_t)r->total * fb);
    r->tv = malloc((size_t)r->total * fb);
    if (!r->tk || !r->tv) {
        free(r->tk), free(r->tv);
        r->tk = r->tv = NULL;
        return xd_err("student attention: out of memory for %lld keys", (long long)r->total);
    }
    r->rk = r->tk, r->rv = r->tv;
    if (bf) {
        int64_t widen = p->use_temp ? keep : r->total; /* the rows in the buffer */
        xd_bf16_to_fp32_n(r->tk, wk, (size_t)(widen * kvd));
        xd_bf16_to_fp32_n(r->tv, wv, (size_t)(widen * kvd));
        if (p->use_temp) {
            bf16_round(r->tk + keep * kvd, k + off * kvd, (size_t)(p->na * kvd));
            bf16_round(r->tv + keep * kvd, v + off * kvd, (size_t)(p->na * kvd));
        }
    } else {
        memcpy(r->tk, wk, (size_t)keep * fb);
        memcpy(r->tv, wv, (size_t)keep * fb);
        memcpy(r->tk + keep * kvd, k + off * kvd, (size_t)p->na * fb);
        memcpy(r->tv + keep * kvd, v + off * kvd, (size_t)p->na * fb);
    }
    return 0;
}

/* Attention of the call's queries [i0, i0 + cnt) over the sinks, the sparse cache's rows as
 * they are now (they follow the sinks; rows exist only once the sinks are complete) and the
 * window; writes hs rows i0 …. */
static int swa_attend(const xd_config *c, const xd_kv *kv, int l, const xd_student_plan *p,
                      const swa_rows *r, const float *q, int i0, int cnt, int64_t from,
                      float *hs) {
    int kvd = kv->kv_dim, qd = c->n_head * c->head_dim;
    int64_t S = c->sinks, SC = kv->scap;
    const float *sk = kv->sk + (size_t)l * (S + SC) * kvd, *sv = kv->sv + (size_t)l * (S + SC) * kvd;
    int ns = r->ns == S ? r->ns + kv->ccount[l] : r->ns;
    int rc = r->rk ? xd_attention_sinkwin(hs + (size_t)i0 * qd, q + (size_t)i0 * qd, cnt,
                                          p->pos0 + i0, sk, sv, ns, r->rk, r->rv, r->r0,
                                          r->total, c->n_head, c->n_kv_head, c->head_dim,
                                          c->window, c->sinks, from)
                   : xd_attention_sinkwin_one(hs + (size_t)i0 * qd, q + (size_t)i0 * qd,
                                              p->pos0 + i0, sk, sv, ns, r->bk, r->bv, kv->dtype,
                                              r->r0, r->total, c->n_head, c->n_kv_head,
                                              c->head_dim, c->window, c->sinks, from);
    return rc ? xd_err("student attention: out of memory") : 0;
}

/* Rows [at, at + cnt) of the call's run as fp32: in the run, or widened from a bfloat16
 * window read in place into *tmp (allocated; the caller frees it). NULL when out of memory. */
static const float *run_rows(const xd_kv *kv, const swa_rows *r, int64_t at, int64_t cnt,
                             int value, float **tmp) {
    size_t kvd = (size_t)kv->kv_dim;
    if (r->rk) return (value ? r->rv : r->rk) + (size_t)at * kvd;
    if (!*tmp && !(*tmp = malloc((size_t)cnt * kvd * 2 * sizeof(float)))) return NULL;
    float *dst = *tmp + (value ? (size_t)cnt * kvd : 0);
    const uint16_t *src = (const uint16_t *)(value ? r->bv : r->bk) + (size_t)at * kvd;
    xd_bf16_to_fp32_n(dst, src, (size_t)cnt * kvd);
    return dst;
}

/* Ends the call: a temporary run that held what the buffer could not (p->use_temp) leaves
 * its newest W rows in layer l's window buffer. */
static void swa_finish(const xd_config *c, xd_kv *kv, int l, const xd_student_plan *p,
                       swa_rows *r) {
    if (!r->tk) return;
    size_t kvd = (size_t)kv->kv_dim, W = (size_t)c->window, rb = kvd * win_eb(kv);
    char *wk = (char *)kv->rk + (size_t)l * 2 * W * rb, *wv = (char *)kv->rv + (size_t)l * 2 * W * rb;
    const float *nk = r->tk + ((size_t)r->total - W) * kvd, *nv = r->tv + ((size_t)r->total - W) * kvd;
    if (p->use_temp && kv->dtype == XD_KV_BF16) { /* values already bfloat16: exact */
        xd_fp32_to_bf16_n(wk, nk, W * kvd);
        xd_fp32_to_bf16_n(wv, nv, W * kvd);
    } else if (p->use_temp) {
        memcpy(wk, nk, W * rb);
        memcpy(wv, nv, W * rb);
    }
    free(r->tk), free(r->tv);
    r->tk = r->tv = NULL;
}

xd_mlstm_cfg xd_student_mlstm_cfg(const xd_config *c) {
    xd_mlstm_cfg mc = xd_mlstm_cfg_default(c->n_head, 2 * c->head_dim, c->head_dim);
    mc.chunk = c->chunk;
    mc.scale = c->mlstm_scale;
    mc.eps = c->mlstm_eps;
    return mc;
}

void xd_student_mlstm_inputs(const xd_config *c, const xd_layer *L, int n, const float *h,
                             const float *q, const float *k, const float *v,
                             const float *ig_add, const float *fg_add, float *phq, float *phk,
                             float *ve, float *ig_raw, float *fg_raw, float *ig, float *fg) {
    int nh = c->n_head, nkv = c->n_kv_head, hd = c->head_dim, d = c->d_model;
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    xd_hedgehog_forward(phq, q, qd, L->fmq_A, L->fmq_b, n, nh, nh, hd);
    xd_hedgehog_forward(phk, k, kvd, L->fmk_A, L->fmk_b, n, nh, nkv, hd);
    for (size_t t = 0; t < (size_t)n; t++)
        for (int hh = 0; hh < nh; hh++)
            memcpy(ve + (t * nh + hh) * hd, v + t * kvd + (size_t)(hh / group) * hd,
                   (size_t)hd * sizeof(float));
    xd_linear(ig_raw, h, L->w_ig, L->b_ig, n, d, nh);
    xd_linear(fg_raw, h, L->w_fg, L->b_fg, n, d, nh);
    size_t ng = (size_t)n * nh;
    if (ig_add) for (size_t i = 0; i < ng; i++) ig_raw[i] += ig_add[i];
    if (fg_add) for (size_t i = 0; i < ng; i++) fg_raw[i] += fg_add[i];
    xd_softcap_forward(ig, ig_raw, (int64_t)n * nh, c->gate_softcap);
    xd_softcap_forward(fg, fg_raw, (int64_t)n * nh, c->gate_softcap);
}

/* Global heads of layer l (docs/design.md, "Global heads"): the new keys/values of each
 * pair's KV head appended to its buffer, then the teacher's causal attention
 * (xd_attention, scale 1/√hd) of the pair's query heads over every position from
 * exact_end on, written over their slices of att (the positions below exact_end take the
 * window-exact rule's SWA output instead: 0 when the rule is off). qg, og: scratch of
 * n·nh·hd floats each. */
static int global_heads(const xd_config *c, xd_kv *kv, int l, const xd_student_plan *p,
                        int64_t exact_end, const float *q, const float *k, const float *v,
                        float *qg, float *og, float *att) {
    int n = p->n, nh = c->n_head, hd = c->head_dim, qd = nh * hd, kvd = c->n_kv_head * hd;
    size_t skip = exact_end > p->pos0 ? (size_t)(exact_end - p->pos0) : 0; /* rows before it */
    if (skip > (size_t)n) skip = (size_t)n;
    int group = nh / c->n_kv_head, first[XD_MAX_GLOBAL_HEADS + 1];
    int npair = gkv_pairs(c, first);
    const xd_head_ref *gh = c->global_heads;
    size_t row = (size_t)hd * sizeof(float);
    if (gkv_reserve(kv, p->pos0 + n)) return -1;
    for (int b = 0; b < npair; b++) {
        int i0 = first[b], nq = first[b + 1] - i0, g = gh[i0].head / group;
        if (gh[i0].layer != l) continue;
        for (size_t t = skip; t < (size_t)n; t++)
            for (int r = 0; r < nq; r++)
                memcpy(qg + ((t - skip) * nq + r) * hd, q + t * qd + (size_t)gh[i0 + r].head * hd,
                       row);
        /* nq query heads over one KV head: GQA with n_kv = 1 */
        /* rounded once when stored (bf16, int8, int4): every later read sees the same values */
        char *K = kv->gk[b], *V = kv->gv[b];
        int kt = xd_kv_key_type(kv->gkv_dtype), vt = xd_kv_value_type(kv->gkv_dtype);
        size_t krb = gkv_krow(kv->gkv_dtype, hd), vrb = gkv_vrow(kv->gkv_dtype, hd);
        for (size_t t = 0; t < (size_t)n; t++) {
            size_t at = (size_t)p->pos0 + t, src = t * kvd + (size_t)g * hd;
            xd_kv_row_store(kt, K + at * krb, k + src, hd);
            xd_kv_row_store(vt, V + at * vrb, v + src, hd);
        }
        if (skip == (size_t)n) continue;
        int rc = xd_attention_kv(og, qg, K, V, n - (int)skip, p->pos0 + (int64_t)skip, nq, 1, hd,
                                 kv->gkv_dtype);
        if (rc)
            return xd_err("student global heads: out of memory at %lld tokens",
                          (long long)(p->pos0 + n));
        for (size_t t = skip; t < (size_t)n; t++)
            for (int r = 0; r < nq; r++)
                memcpy(att + t * qd + (size_t)gh[i0 + r].head * hd,
                       og + ((t - skip) * nq + r) * hd, row);
    }
    return 0;
}

/* Sparse cache (docs/design.md, "Sparse cache"; LoLA, arXiv 2505.23666): each of the nr
 * rows ek, ev (keys, values [nr][kv_dim]) that left layer l's window is scored by how badly
 * the updated mLSTM state recalls it, the mean over the layer's heads that are not global of
 *     ‖v − v̂(k)‖²,  v̂(k) = the state's readout for the query φ_k(k)  (xd_mlstm_readout),
 * and kept when the cache has room or it beats the lowest score held (which it replaces).
 * A layer whose every head is global keeps none (its SWA branch is not used). phk: scratch
 * of XD_SC_BLOCK·nh·dphi floats, v̂: XD_SC_BLOCK·hd. Returns 1 when a row was dropped (one
 * left out, or one replaced; every row in a layer that keeps none), else 0. */
enum { XD_SC_BLOCK = 64, SC_PIECE = 16 };

static int is_global(const xd_config *c, int l, int h) {
    for (int i = 0; i < c->n_global_heads; i++)
        if (c->global_heads[i].layer == l && c->global_heads[i].head == h) return 1;
    return 0;
}

static int sparse_cache_update(const xd_config *c, const xd_layer *L, xd_kv *kv, int l,
                               const float *ek, const float *ev, int64_t nr, float *phk,
                               float *vh) {
    int nh = c->n_head, hd = c->head_dim, kvd = kv->kv_dim, dphi = 2 * hd;
    int group = nh / c->n_kv_head, SC = kv->scap;
    int64_t S = c->sinks;
    int n_local = nh;
    for (int i = 0; i < c->n_global_heads; i++) n_local -= c->global_heads[i].layer == l;
    if (nr <= 0) return 0;
    if (!n_local) return 1; /* every row is dropped */
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    size_t sl = (size_t)l;
    xd_mlstm_state st = {kv->C + sl * nh * dphi * hd, kv->n + sl * nh * dphi, kv->m + sl * nh};
    float *sk = kv->sk + (size_t)l * (S + SC) * kvd, *sv = kv->sv + (size_t)l * (S + SC) * kvd;
    float *score = kv->cscore + sl * SC;
    int *cnt = &kv->ccount[l], dropped = 0;
    for (int64_t r0 = 0; r0 < nr; r0 += XD_SC_BLOCK) {
        int b = (int)(nr - r0 < XD_SC_BLOCK ? nr - r0 : XD_SC_BLOCK);
        xd_hedgehog_forward(phk, ek + r0 * kvd, kvd, L->fmk_A, L->fmk_b, b, nh, c->n_kv_head, hd);
        double err[XD_SC_BLOCK] = {0};
        for (int h = 0; h < nh; h++) {
            if (is_global(c, l, h)) continue;
            xd_mlstm_readout(vh, hd, &st, h, phk + (size_t)h * dphi, nh * dphi, b, &mc);
            for (int t = 0; t < b; t++) {
                const float *vt = ev + (r0 + t) * kvd + (size_t)(h / group) * hd;
                double e = 0;
                for (int x = 0; x < hd; x++) {
                    double dx = (double)vt[x] - vh[(size_t)t * hd + x];
                    e += dx * dx;
                }
                err[t] += e;
            }
        }
        for (int t = 0; t < b; t++) {
            float s = (float)(err[t] / n_local);
            int at = *cnt;
            if (at == SC) { /* full: replace the lowest score if this one beats it */
                at = 0;
                for (int j = 1; j < SC; j++)
                    if (score[j] < score[at]) at = j;
                dropped = 1; /* this row or the one it replaces */
                if (!(s > score[at])) continue;
            } else
                (*cnt)++;
            score[at] = s;
            memcpy(sk + (S + at) * kvd, ek + (r0 + t) * kvd, (size_t)kvd * sizeof(float));
            memcpy(sv + (S + at) * kvd, ev + (r0 + t) * kvd, (size_t)kvd * sizeof(float));
        }
    }
    return dropped;
}

int xd_student_mixer(const xd_model *m, const xd_layer *L, xd_kv *kv, int l,
                     const xd_student_plan *p, const float *h, const float *q, const float *k,
                     const float *v, const float *qp, const float *kp, float *att) {
    const xd_config *c = &m->cfg;
    int n = p->n, nh = c->n_head, nkv = c->n_kv_head, hd = c->head_dim;
    int qd = nh * hd, kvd = nkv * hd, dphi = 2 * hd;
    /* scratch kept in the state and grown to the largest call: decoding
     * allocates nothing per token (global heads aside: xd_attention takes its
     * score rows per call, as in the teacher's decoding) */
    size_t N = (size_t)n, need = N * (3 * (size_t)qd + 2 * (size_t)nh * dphi + 2 * (size_t)nh);
    if (c->n_global_heads) need += 2 * N * (size_t)qd;
    size_t sc_at = need; /* the sparse cache's scratch (φ(k) and v̂ of a block of rows) */
    if (kv->scap) need += XD_SC_BLOCK * ((size_t)nh * dphi + (size_t)hd);
    if (need > kv->mx_cap) {
        float *b = realloc(kv->mx_scratch, need * sizeof(float));
        if (!b) return xd_err("student mixer: out of memory for %d tokens", n);
        kv->mx_scratch = b;
        kv->mx_cap = need;
    }
    float *hs = kv->mx_scratch, *hm = hs + N * qd, *ve = hm + N * qd, *phq = ve + N * qd;
    float *phk = phq + N * nh * dphi, *ig = phk + N * nh * dphi, *fg = ig + N * nh;
    int rc = -1;
    swa_rows rows;
    if (swa_stage(c, kv, l, p, k, v, &rows)) return -1;
    /* mLSTM branch inputs (gates capped in place: no backward follows) */
    xd_student_mlstm_inputs(c, L, n, h, q, k, v, NULL, NULL, phq, phk, ve, ig, fg, ig, fg);
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    size_t sl = (size_t)l;
    xd_mlstm_state st = {kv->C + sl * nh * dphi * hd, kv->n + sl * nh * dphi, kv->m + sl * nh};
    /* Both branches over the call's tokens, in pieces of SC_PIECE when a sparse cache
     * takes the rows that leave the window (docs/design.md, "Sparse cache"): a piece's
     * queries see the rows not yet offered to the cache (from `from` on: those that left
     * the window earlier in the piece stay visible); after the piece the mLSTM state is
     * the piece's, the rows that left the window in it are scored against it and offered
     * to the cache, and the next piece's queries attend the cache as it is then. */
    int piece = kv->scap ? SC_PIECE : n;
    int64_t from = kv->cpos;
    for (int i0 = 0; i0 < n; i0 += piece) {
        int cnt = n - i0 < piece ? n - i0 : piece;
        if (swa_attend(c, kv, l, p, &rows, q, i0, cnt, kv->scap ? from : INT64_MAX, hs))
            goto done;
        size_t a = (size_t)i0;
        float *hmi = hm + a * qd, *qi = phq + a * nh * dphi, *ki = phk + a * nh * dphi;
        float *vi = ve + a * qd, *ii = ig + a * nh, *fi = fg + a * nh;
        int has_state = p->pos0 + i0 > 0;
        if (c->memory_rule == XD_MEMORY_DELTA) { /* the state is C alone (n, m stay 0) */
            if (cnt == 1) {
                if (xd_delta_step(hmi, st.C, qi, ki, vi, ii, fi, 0, &mc)) goto done;
            } else if (xd_delta_forward(hmi, NULL, st.C, &(xd_mlstm_in){qi, ki, vi, ii, fi, NULL},
                                        has_state ? st.C : NULL, cnt, &mc))
                goto done;
        } else if (cnt == 1) {
            xd_mlstm_step(hmi, &st, qi, ki, vi, ii, fi, 0, &mc);
        } else {
            xd_mlstm_in in = {qi, ki, vi, ii, fi, NULL};
            if (xd_mlstm_chunk_forward(hmi, NULL, &st, &in, has_state ? &st : NULL, cnt, &mc))
                goto done;
        }
        int64_t to = p->pos0 + i0 + cnt - c->window + 1; /* the next query's window starts here */
        if (kv->scap && to > from) { /* rows [from, to) left the window: all among the
                                      * call's rows (kv->cpos ≥ their first position r0) */
            float *tmp = NULL;
            const float *ek = run_rows(kv, &rows, from - rows.r0, to - from, 0, &tmp);
            const float *ev = ek ? run_rows(kv, &rows, from - rows.r0, to - from, 1, &tmp) : NULL;
            if (!ev) {
                free(tmp);
                xd_err("student sparse cache: out of memory");
                goto done;
            }
            if (sparse_cache_update(c, L, kv, l, ek, ev, to - from, kv->mx_scratch + sc_at,
                                    kv->mx_scratch + sc_at + XD_SC_BLOCK * (size_t)nh * dphi) &&
                kv->cexact[l] == INT64_MAX) /* the next piece's queries miss a row */
                kv->cexact[l] = p->pos0 + i0 + cnt;
            free(tmp);
            from = to;
        }
    }
    /* mix (pre-RoPE q, k) */
    xd_mix_forward(att, NULL, hm, hs, qp, qd, kp, kvd, v, kvd, L->w_mix, L->b_mix, n, nh, nkv, hd);
    /* the window-exact rule, for every head: below sinks + window the SWA branch is the
     * teacher's attention in fp32, so global heads take it too, not their compact cache;
     * with a sparse cache, until the first query that misses a dropped row */
    int64_t exact_end = c->exact_in_window ? (int64_t)c->sinks + c->window : 0;
    if (exact_end && kv->scap && kv->cexact[l] > exact_end) exact_end = kv->cexact[l];
    /* global heads: their slices of att are the full attention (the mix is not used) */
    if (c->n_global_heads &&
        global_heads(c, kv, l, p, exact_end, q, k, v, fg + N * nh, fg + N * nh + N * qd, att))
        goto done;
    if (exact_end) xd_mix_exact_window(att, NULL, hs, 1, n, nh, hd, p->pos0, NULL, exact_end);
    rc = 0;
done:
    swa_finish(c, kv, l, p, &rows);
    return rc;
}
