/* Teacher forward pass with a KV cache: batched prefill (sgemm) and
 * single-token decode (sgemv) share one code path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_observer.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "model.h"
#include "qweights.h"
#include "student.h"

xd_kv *xd_kv_create(const xd_model *m, int max_tokens) {
    return xd_kv_create_typed(m, max_tokens, XD_KV_F32);
}

xd_kv *xd_kv_create_typed(const xd_model *m, int max_tokens, int dtype) {
    if (dtype < XD_KV_F32 || dtype > XD_KV_K8V4) {
        xd_err("KV cache: type %d is not a key/value type (expected %d..%d: float32, bfloat16, "
               "int8, int4, k8v4)", dtype, XD_KV_F32, XD_KV_K8V4);
        return NULL;
    }
    if (max_tokens <= 0) {
        xd_err("KV cache: max_tokens = %d must be positive", max_tokens);
        return NULL;
    }
    xd_kv *kv = calloc(1, sizeof *kv);
    if (!kv) { xd_err("out of memory"); return NULL; }
    kv->max_tokens = max_tokens;
    kv->n_layer = m->cfg.n_layer;
    kv->kv_dim = m->cfg.n_kv_head * m->cfg.head_dim;
    if (m->cfg.student) { /* constant-size state; max_tokens does not apply */
        kv->dtype = dtype;
        if (xd_student_kv_alloc(kv, m)) {
            xd_kv_free(kv);
            return NULL;
        }
        return kv;
    }
    size_t n = (size_t)kv->n_layer * (size_t)max_tokens * (size_t)kv->kv_dim;
    kv->dtype = dtype;
    kv->kpos = kv->vpos = (size_t)kv->kv_dim * sizeof(float);
    if (dtype != XD_KV_F32) {
        size_t rows = (size_t)kv->n_layer * (size_t)max_tokens * (size_t)m->cfg.n_kv_head;
        kv->krb = xd_kv_row_bytes(xd_kv_key_type(dtype), m->cfg.head_dim);
        kv->vrb = xd_kv_row_bytes(xd_kv_value_type(dtype), m->cfg.head_dim);
        kv->kpos = kv->krb * (size_t)m->cfg.n_kv_head;
        kv->vpos = kv->vrb * (size_t)m->cfg.n_kv_head;
        kv->kb = malloc(rows * kv->krb);
        kv->vb = malloc(rows * kv->vrb);
        if (!kv->kb || !kv->vb) {
            xd_err("KV cache: cannot allocate %.1f MB for %d tokens",
                   (double)rows * (double)(kv->krb + kv->vrb) / 1e6, max_tokens);
            xd_kv_free(kv);
            return NULL;
        }
        return kv;
    }
    kv->k = malloc(n * sizeof(float));
    kv->v = malloc(n * sizeof(float));
    if (!kv->k || !kv->v) {
        xd_err("KV cache: cannot allocate %.1f MB for %d tokens", 2.0 * (double)n * 4 / 1e6,
               max_tokens);
        xd_kv_free(kv);
        return NULL;
    }
    return kv;
}

void xd_kv_free(xd_kv *kv) {
    if (!kv) return;
    if (kv->student) xd_student_kv_free(kv);
    free(kv->k);
    free(kv->v);
    free(kv->kb);
    free(kv->vb);
    free(kv);
}

void xd_kv_reset(xd_kv *kv) {
    kv->pos = 0;
    if (kv->student) xd_student_kv_reset(kv);
}
int xd_kv_pos(const xd_kv *kv) { return kv->pos; }

int xd_kv_copy(xd_kv *dst, const xd_kv *src) {
    if (!dst || !src || dst->student != src->student || dst->n_layer != src->n_layer ||
        dst->kv_dim != src->kv_dim)
        return xd_err("KV cache copy: the two caches belong to different models");
    if (!src->student && dst->dtype != src->dtype)
        return xd_err("KV cache copy: the caches hold different types (%s and %s)",
                      xd_kv_dtype_name(dst->dtype), xd_kv_dtype_name(src->dtype));
    if (src->student) {
        if (xd_student_kv_copy(dst, src)) return -1;
    } else {
        if (dst->max_tokens < src->pos)
            return xd_err("KV cache copy: %d positions do not fit a cache of %d", src->pos,
                          dst->max_tokens);
        int typed = src->dtype != XD_KV_F32;
        size_t kpos = src->kpos, vpos = src->vpos;
        uint8_t *dk = typed ? dst->kb : (uint8_t *)dst->k, *dv = typed ? dst->vb : (uint8_t *)dst->v;
        const uint8_t *sk = typed ? src->kb : (const uint8_t *)src->k,
                      *sv = typed ? src->vb : (const uint8_t *)src->v;
        for (int l = 0; l < src->n_layer; l++) { /* the caches' strides may differ */
            memcpy(dk + (size_t)l * (size_t)dst->max_tokens * kpos,
                   sk + (size_t)l * (size_t)src->max_tokens * kpos, (size_t)src->pos * kpos);
            memcpy(dv + (size_t)l * (size_t)dst->max_tokens * vpos,
                   sv + (size_t)l * (size_t)src->max_tokens * vpos, (size_t)src->pos * vpos);
        }
    }
    dst->pos = src->pos;
    return 0;
}

/* Activations for n tokens. */
typedef struct {
    float *x, *h, *q, *k, *v, *att, *o, *g, *u;
    float *qp, *kp; /* student: q, k before RoPE */
} scratch;

static void scratch_free(scratch *s) {
    free(s->x); free(s->h); free(s->q); free(s->k); free(s->v);
    free(s->att); free(s->o); free(s->g); free(s->u); free(s->qp); free(s->kp);
}

static int scratch_alloc(scratch *s, const xd_config *c, int n) {
    size_t N = (size_t)n, d = (size_t)c->d_model, qd = (size_t)c->n_head * c->head_dim;
    size_t kvd = (size_t)c->n_kv_head * c->head_dim, ff = (size_t)c->d_ff;
    memset(s, 0, sizeof *s);
    s->x = malloc(N * d * 4); s->h = malloc(N * d * 4); s->o = malloc(N * d * 4);
    s->q = malloc(N * qd * 4); s->att = malloc(N * qd * 4);
    s->k = malloc(N * kvd * 4); s->v = malloc(N * kvd * 4);
    s->g = malloc(N * ff * 4); s->u = malloc(N * ff * 4);
    if (c->student) {
        s->qp = malloc(N * qd * 4);
        s->kp = malloc(N * kvd * 4);
    }
    if (!s->x || !s->h || !s->o || !s->q || !s->att || !s->k || !s->v || !s->g || !s->u ||
        (c->student && (!s->qp || !s->kp))) {
        scratch_free(s);
        return xd_err("forward: out of memory for %d tokens", n);
    }
    return 0;
}

static void add_inplace(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* One decoder layer on s->x (n tokens at positions pos0..). */
static int layer_forward(const xd_model *m, const xd_layer *L, xd_kv *kv, int l, scratch *s,
                         int n, int64_t pos0, const xd_student_plan *plan,
                         const xd_attn_observer *obs) {
    const xd_config *c = &m->cfg;
    int d = c->d_model, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    float eps = c->norm_eps;
    size_t nd = (size_t)n * (size_t)d;

    /* attention block */
    const float *h = s->x;
    if (L->attn_norm) { xd_rmsnorm(s->h, s->x, L->attn_norm, n, d, eps); h = s->h; }
    if (xd_linear_model(m, s->q, h, L->wq, L->bq, n, d, qd) ||
        xd_linear_model(m, s->k, h, L->wk, L->bk, n, d, kvd) ||
        xd_linear_model(m, s->v, h, L->wv, L->bv, n, d, kvd))
        return -1;
    if (c->qk_norm == XD_QKNORM_HEAD) {
        xd_rmsnorm(s->q, s->q, L->q_norm, n * c->n_head, hd, eps);
        xd_rmsnorm(s->k, s->k, L->k_norm, n * c->n_kv_head, hd, eps);
    } else if (c->qk_norm == XD_QKNORM_FULL) {
        xd_rmsnorm(s->q, s->q, L->q_norm, n, qd, eps);
        xd_rmsnorm(s->k, s->k, L->k_norm, n, kvd, eps);
    }
    if (c->student) {
        memcpy(s->qp, s->q, (size_t)n * qd * sizeof(float));
        memcpy(s->kp, s->k, (size_t)n * kvd * sizeof(float));
    }
    xd_rope(s->q, n, c->n_head, hd, qd, pos0, m->rope_inv_freq);
    xd_rope(s->k, n, c->n_kv_head, hd, kvd, pos0, m->rope_inv_freq);
    if (c->student) {
        if (xd_student_mixer(m, L, kv, l, plan, h, s->q, s->k, s->v, s->qp, s->kp, s->att))
            return -1;
    } else {
    size_t layer_off = (size_t)l * (size_t)kv->max_tokens * (size_t)kvd;
    float *K = NULL, *V = NULL;
    const void *Kr, *Vr;
    if (kv->dtype == XD_KV_F32) {
        K = kv->k + layer_off, V = kv->v + layer_off;
        memcpy(K + (size_t)pos0 * kvd, s->k, (size_t)n * kvd * sizeof(float));
        memcpy(V + (size_t)pos0 * kvd, s->v, (size_t)n * kvd * sizeof(float));
        Kr = K, Vr = V;
    } else { /* typed rows, one per (position, KV head) */
        size_t rows0 = (size_t)l * (size_t)kv->max_tokens * (size_t)c->n_kv_head;
        uint8_t *Kb = kv->kb + rows0 * kv->krb, *Vb = kv->vb + rows0 * kv->vrb;
        int kt = xd_kv_key_type(kv->dtype), vt = xd_kv_value_type(kv->dtype);
        for (int i = 0; i < n; i++)
            for (int g = 0; g < c->n_kv_head; g++) {
                size_t row = (size_t)(pos0 + i) * (size_t)c->n_kv_head + (size_t)g;
                xd_kv_row_store(kt, Kb + row * kv->krb, s->k + (size_t)i * kvd + (size_t)g * hd, hd);
                xd_kv_row_store(vt, Vb + row * kv->vrb, s->v + (size_t)i * kvd + (size_t)g * hd, hd);
            }
        Kr = Kb, Vr = Vb;
    }
    /* one query (decoding): the split-K kernel that reads each KV head's rows once for its
     * whole group of query heads (kernels.h, xd_attention_kv) */
    if (xd_attention_kv(s->att, s->q, Kr, Vr, n, pos0, c->n_head, c->n_kv_head, hd, kv->dtype))
        return xd_err("attention: out of memory at %lld tokens", (long long)(pos0 + n));
    if (obs) {
        xd_attn_view view = {l, n, pos0, c->n_head, c->n_kv_head, hd, s->q, K, V,
                             1.0 / sqrt((double)hd)};
        xd_err_clear();
        if (obs->fn(obs->user, &view))
            return xd_last_error()[0] ? -1 : xd_err("forward: the attention observer stopped it at layer %d", l);
    }
    }
    if (xd_linear_model(m, s->o, s->att, L->wo, NULL, n, qd, d)) return -1;
    if (L->post_attn_norm) xd_rmsnorm(s->o, s->o, L->post_attn_norm, n, d, eps);
    add_inplace(s->x, s->o, nd);

    /* MLP block */
    h = s->x;
    if (L->ffn_norm) { xd_rmsnorm(s->h, s->x, L->ffn_norm, n, d, eps); h = s->h; }
    if (xd_linear_model(m, s->g, h, L->w_gate, NULL, n, d, c->d_ff) ||
        xd_linear_model(m, s->u, h, L->w_up, NULL, n, d, c->d_ff))
        return -1;
    xd_swiglu(s->g, s->u, (int64_t)n * c->d_ff);
    if (xd_linear_model(m, s->o, s->g, L->w_down, NULL, n, c->d_ff, d)) return -1;
    if (L->post_ffn_norm) xd_rmsnorm(s->o, s->o, L->post_ffn_norm, n, d, eps);
    add_inplace(s->x, s->o, nd);
    return 0;
}

int xd_forward(const xd_model *m, xd_kv *kv, const int32_t *tokens, int n, float *logits,
               int all_logits) {
    return xd_forward_observed(m, kv, tokens, n, logits, all_logits, NULL);
}

int xd_forward_observed(const xd_model *m, xd_kv *kv, const int32_t *tokens, int n, float *logits,
                        int all_logits, const xd_attn_observer *obs) {
    const xd_config *c = &m->cfg;
    if (n <= 0) return xd_err("forward: no tokens");
    if (obs && !kv->student && kv->dtype != XD_KV_F32)
        return xd_err("forward: an attention observer needs a float32 KV cache (this one is %s)",
                      xd_kv_dtype_name(kv->dtype));
    if (obs && (kv->student || !obs->fn))
        return xd_err(kv->student ? "forward: %s is a student: an attention observer needs a teacher"
                                  : "forward: %s: the attention observer has no function", m->path);
    if (!kv->student && kv->pos + n > kv->max_tokens)
        return xd_err("forward: %d + %d tokens exceed the KV cache of %d", kv->pos, n,
                      kv->max_tokens);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return xd_err("forward: token id %d at %d is out of range [0, %d)", tokens[i], i,
                          c->vocab_size);
    scratch s;
    if (scratch_alloc(&s, c, n)) return -1;
    int d = c->d_model;
    xd_model_embed_rows(m, s.x, tokens, n);
    int rc = 0;
    xd_student_plan plan = {0};
    if (kv->student) xd_student_plan_make(&plan, kv, n);
    for (int l = 0; l < c->n_layer && !rc; l++)
        rc = layer_forward(m, &m->layers[l], kv, l, &s, n, kv->pos, &plan, obs);
    if (!rc) {
        if (kv->student) xd_student_kv_commit(kv, &plan);
        kv->pos += n;
        if (logits) {
            int first = all_logits ? 0 : n - 1, rows = n - first;
            float *xr = s.x + (size_t)first * d;
            xd_rmsnorm(xr, xr, m->final_norm, rows, d, c->norm_eps);
            rc = xd_linear_model(m, logits, xr, m->lm_head, NULL, rows, d, c->vocab_size);
        }
    }
    scratch_free(&s);
    return rc;
}
