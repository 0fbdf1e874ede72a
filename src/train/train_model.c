/* Training forward and backward of the decoder (Llama / Qwen2 / Qwen3 /
 * OLMo-2). The forward mirrors src/model/forward.c but keeps every activation
 * the backward needs; the backward walks the layers in reverse, each op's
 * backward accumulating into the gradient arena. */
#include "train_model.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/distill_loss.h"
#include "kernels/kernels.h"
#include "kernels/train_ops.h"
#include "model/qweights.h"

static float *take(float *base, size_t *cur, size_t n) {
    float *p = base ? base + *cur : NULL;
    *cur += n;
    return p;
}

/* Lays out (or, with base == NULL, counts) the activation arena. */
static size_t acts_layout(xd_trainer_model *tm, float *base) {
    const xd_config *c = &tm->m->cfg;
    size_t BT = (size_t)tm->B * tm->T, d = (size_t)c->d_model;
    size_t qd = (size_t)c->n_head * c->head_dim, kvd = (size_t)c->n_kv_head * c->head_dim;
    size_t ff = (size_t)c->d_ff, V = (size_t)c->vocab_size, cur = 0;
    for (int l = 0; l < c->n_layer; l++) {
        xd_layer_acts *a = &tm->acts[l];
        const xd_layer *L = &tm->m->layers[l];
        memset(a, 0, sizeof *a);
        a->x_in = take(base, &cur, BT * d);
        if (L->attn_norm) a->h1 = take(base, &cur, BT * d);
        if (c->qk_norm) {
            a->q_raw = take(base, &cur, BT * qd);
            a->k_raw = take(base, &cur, BT * kvd);
        }
        a->q = take(base, &cur, BT * qd);
        a->k = take(base, &cur, BT * kvd);
        a->v = take(base, &cur, BT * kvd);
        if (c->student) {
            size_t nmx = xd_mixer_acts_layout(c, l, tm->B, tm->T, &a->mx, NULL);
            float *mb = take(base, &cur, nmx);
            if (base) xd_mixer_acts_layout(c, l, tm->B, tm->T, &a->mx, mb);
        } else
            a->probs = take(base, &cur, (size_t)tm->B * c->n_head * tm->T * tm->T);
        a->att = take(base, &cur, BT * qd);
        a->o_raw = take(base, &cur, BT * d);
        a->x_mid = take(base, &cur, BT * d);
        if (L->ffn_norm) a->h2 = take(base, &cur, BT * d);
        a->g = take(base, &cur, BT * ff);
        a->u = take(base, &cur, BT * ff);
        a->sw = take(base, &cur, BT * ff);
        a->m_raw = take(base, &cur, BT * d);
        for (int t = 0; t < XD_LORA_NT; t++) {
            const xd_lora_lin *z = xd_lora_get(tm->lora, l, t);
            if (z) a->lax[t] = take(base, &cur, BT * (size_t)z->rank);
        }
    }
    if (tm->lora) tm->lora_dax = take(base, &cur, BT * (size_t)tm->lora->max_rank);
    if (tm->lora && c->student) tm->gate_add = take(base, &cur, 2 * BT * (size_t)c->n_head);
    tm->x_final = take(base, &cur, BT * d);
    tm->x_norm = take(base, &cur, BT * d);
    tm->logits = take(base, &cur, BT * V);
    tm->dx = take(base, &cur, BT * d);
    tm->dx2 = take(base, &cur, BT * d);
    tm->dh = take(base, &cur, BT * d);
    tm->dq = take(base, &cur, BT * qd);
    tm->dk = take(base, &cur, BT * kvd);
    tm->dv = take(base, &cur, BT * kvd);
    tm->datt = take(base, &cur, BT * qd);
    tm->dg = take(base, &cur, BT * ff);
    tm->du = take(base, &cur, BT * ff);
    tm->dsw = take(base, &cur, BT * ff);
    tm->dk_raw = take(base, &cur, BT * kvd);
    if (c->student) {
        tm->dqp = take(base, &cur, BT * qd);
        tm->dkp = take(base, &cur, BT * kvd);
        tm->dh_mix = take(base, &cur, BT * d);
        size_t ns = xd_mixer_scratch_layout(c, tm->B, tm->T, &tm->mxs, NULL);
        float *sb = take(base, &cur, ns);
        if (base) xd_mixer_scratch_layout(c, tm->B, tm->T, &tm->mxs, sb);
    }
    return cur;
}

int xd_tm_init(xd_trainer_model *tm, xd_model *m, int B, int T) {
    return xd_tm_init_ex(tm, m, B, T, 1);
}

static int tm_init(xd_trainer_model *tm, xd_model *m, const xd_lora_set *lora, int B, int T,
                   int with_grads) {
    memset(tm, 0, sizeof *tm);
    if (xd_model_require_fp32(m, "training")) return -1;
    tm->m = m;
    tm->lora = lora;
    if (lora && lora->n_layer != m->cfg.n_layer)
        return xd_err("training: the LoRA adapters were bound to another model");
    tm->B = B;
    tm->T = T;
    if (B <= 0 || T <= 0) return xd_err("training: batch %d x sequence %d must be positive", B, T);
    tm->grads = *m;
    tm->grads.layers = calloc((size_t)m->cfg.n_layer, sizeof(xd_layer));
    tm->grad_arena = calloc(with_grads ? m->arena_floats : 1, sizeof(float));
    tm->acts = calloc((size_t)m->cfg.n_layer, sizeof(xd_layer_acts));
    tm->pos = malloc((size_t)B * T * sizeof(int32_t));
    tm->doc_start = malloc((size_t)B * T * sizeof(int32_t));
    if (!tm->grads.layers || !tm->grad_arena || !tm->acts || !tm->pos || !tm->doc_start) {
        xd_tm_free(tm);
        return xd_err("training: out of memory for gradients");
    }
    xd_model_layout(&m->cfg, &tm->grads, with_grads ? tm->grad_arena : NULL);
    tm->grads.arena = tm->grad_arena;
    tm->act_floats = acts_layout(tm, NULL);
    tm->act_arena = malloc(tm->act_floats * sizeof(float));
    if (!tm->act_arena) {
        double mb = (double)tm->act_floats * 4 / 1e6;
        xd_tm_free(tm);
        return xd_err("training: cannot allocate %.0f MB of activations for batch %d x %d", mb, B,
                      T);
    }
    acts_layout(tm, tm->act_arena);
    return 0;
}

int xd_tm_init_ex(xd_trainer_model *tm, xd_model *m, int B, int T, int with_grads) {
    return tm_init(tm, m, NULL, B, T, with_grads);
}

int xd_tm_init_lora(xd_trainer_model *tm, xd_model *m, const xd_lora_set *lora, int B, int T) {
    return tm_init(tm, m, lora, B, T, 0);
}

void xd_tm_free(xd_trainer_model *tm) {
    free(tm->grads.layers);
    free(tm->grad_arena);
    free(tm->acts);
    free(tm->act_arena);
    free(tm->pos);
    free(tm->doc_start);
    memset(tm, 0, sizeof *tm);
}

void xd_tm_zero_grad(xd_trainer_model *tm) {
    if (tm->grads.embed) memset(tm->grad_arena, 0, tm->m->arena_floats * sizeof(float));
    if (tm->lora && tm->lora->grad) memset(tm->lora->grad, 0, tm->lora->n_param * sizeof(float));
}

/* y += the LoRA term of target t in layer l (input x), saving x·Aᵀ. */
static void lora_forward(xd_trainer_model *tm, int l, int t, float *y, const float *x) {
    const xd_lora_lin *z = xd_lora_get(tm->lora, l, t);
    if (z)
        xd_lora_forward(y, tm->acts[l].lax[t], x, z->A, z->B, z->scaling, tm->B * tm->T, z->in,
                        z->out, z->rank);
}

/* Its backward: dA, dB into the adapters' gradients, dx accumulated. */
static void lora_backward(xd_trainer_model *tm, int l, int t, float *dx, const float *dy,
                          const float *x) {
    const xd_lora_lin *z = xd_lora_get(tm->lora, l, t);
    if (z)
        xd_lora_backward(dx, z->dA, z->dB, tm->lora_dax, dy, x, tm->acts[l].lax[t], z->A, z->B,
                         z->scaling, tm->B * tm->T, z->in, z->out, z->rank);
}

static void add_into(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void add_inplace(float *y, const float *a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a[i];
}

static int layer_forward(xd_trainer_model *tm, int l) {
    const xd_model *m = tm->m;
    const xd_config *c = &m->cfg;
    const xd_layer *L = &m->layers[l];
    xd_layer_acts *a = &tm->acts[l];
    int BT = tm->B * tm->T, T = tm->T, d = c->d_model, hd = c->head_dim;
    int qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    float eps = c->norm_eps;

    const float *h = a->x_in;
    if (L->attn_norm) { xd_rmsnorm(a->h1, a->x_in, L->attn_norm, BT, d, eps); h = a->h1; }
    float *q = c->qk_norm ? a->q_raw : a->q, *k = c->qk_norm ? a->k_raw : a->k;
    xd_linear(q, h, L->wq, L->bq, BT, d, qd);
    xd_linear(k, h, L->wk, L->bk, BT, d, kvd);
    xd_linear(a->v, h, L->wv, L->bv, BT, d, kvd);
    lora_forward(tm, l, XD_LORA_Q, q, h);
    lora_forward(tm, l, XD_LORA_K, k, h);
    lora_forward(tm, l, XD_LORA_V, a->v, h);
    if (c->qk_norm == XD_QKNORM_HEAD) {
        xd_rmsnorm(a->q, a->q_raw, L->q_norm, BT * c->n_head, hd, eps);
        xd_rmsnorm(a->k, a->k_raw, L->k_norm, BT * c->n_kv_head, hd, eps);
    } else if (c->qk_norm == XD_QKNORM_FULL) {
        xd_rmsnorm(a->q, a->q_raw, L->q_norm, BT, qd, eps);
        xd_rmsnorm(a->k, a->k_raw, L->k_norm, BT, kvd, eps);
    }
    if (c->student) { /* the mix gate reads q, k before RoPE */
        memcpy(a->mx.qp, a->q, (size_t)BT * qd * sizeof(float));
        memcpy(a->mx.kp, a->k, (size_t)BT * kvd * sizeof(float));
    }
    xd_rope_pos(a->q, BT, c->n_head, hd, qd, tm->pos, m->rope_inv_freq);
    xd_rope_pos(a->k, BT, c->n_kv_head, hd, kvd, tm->pos, m->rope_inv_freq);
    if (c->student) {
        a->mx.ig_add = a->mx.fg_add = NULL;
        if (xd_lora_get(tm->lora, l, XD_LORA_IGATE) || xd_lora_get(tm->lora, l, XD_LORA_FGATE)) {
            size_t ng = (size_t)BT * c->n_head;
            memset(tm->gate_add, 0, 2 * ng * sizeof(float));
            lora_forward(tm, l, XD_LORA_IGATE, tm->gate_add, h);
            lora_forward(tm, l, XD_LORA_FGATE, tm->gate_add + ng, h);
            a->mx.ig_add = tm->gate_add;
            a->mx.fg_add = tm->gate_add + ng;
        }
        if (xd_mixer_train_forward(c, l, L, &a->mx, h, a->q, a->k, a->v, tm->doc_start, tm->B, T,
                                   a->att))
            return -1;
    } else
    for (int b = 0; b < tm->B; b++) {
        size_t r = (size_t)b * T;
        xd_attn_train_forward(a->att + r * qd, a->probs + (size_t)b * c->n_head * T * T,
                              a->q + r * qd, a->k + r * kvd, a->v + r * kvd, T, c->n_head,
                              c->n_kv_head, hd, tm->doc_start + r, tm->window, tm->sinks);
    }
    xd_linear(a->o_raw, a->att, L->wo, NULL, BT, qd, d);
    lora_forward(tm, l, XD_LORA_O, a->o_raw, a->att);
    float *next_in = l + 1 < c->n_layer ? tm->acts[l + 1].x_in : tm->x_final;
    size_t nd = (size_t)BT * d;
    if (L->post_attn_norm) {
        xd_rmsnorm(tm->dh, a->o_raw, L->post_attn_norm, BT, d, eps); /* dh: scratch */
        add_into(a->x_mid, a->x_in, tm->dh, nd);
    } else add_into(a->x_mid, a->x_in, a->o_raw, nd);

    h = a->x_mid;
    if (L->ffn_norm) { xd_rmsnorm(a->h2, a->x_mid, L->ffn_norm, BT, d, eps); h = a->h2; }
    xd_linear(a->g, h, L->w_gate, NULL, BT, d, c->d_ff);
    xd_linear(a->u, h, L->w_up, NULL, BT, d, c->d_ff);
    lora_forward(tm, l, XD_LORA_GATE, a->g, h);
    lora_forward(tm, l, XD_LORA_UP, a->u, h);
    xd_swiglu_forward(a->sw, a->g, a->u, (int64_t)BT * c->d_ff);
    xd_linear(a->m_raw, a->sw, L->w_down, NULL, BT, c->d_ff, d);
    lora_forward(tm, l, XD_LORA_DOWN, a->m_raw, a->sw);
    if (L->post_ffn_norm) {
        xd_rmsnorm(tm->dh, a->m_raw, L->post_ffn_norm, BT, d, eps);
        add_into(next_in, a->x_mid, tm->dh, nd);
    } else add_into(next_in, a->x_mid, a->m_raw, nd);
    return 0;
}

/* Backward of one layer: tm->dx holds dL/d(layer output) on entry and
 * dL/d(layer input) on exit. */
static int layer_backward(xd_trainer_model *tm, int l) {
    const xd_model *m = tm->m;
    const xd_config *c = &m->cfg;
    const xd_layer *L = &m->layers[l];
    xd_layer *G = &tm->grads.layers[l];
    xd_layer_acts *a = &tm->acts[l];
    int BT = tm->B * tm->T, T = tm->T, d = c->d_model, hd = c->head_dim, ff = c->d_ff;
    int qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    float eps = c->norm_eps;
    size_t nd = (size_t)BT * d;

    /* ---- MLP block: out = x_mid + post?(W_down · swiglu(W_g h2, W_u h2)) */
    const float *dm = tm->dx; /* gradient of m_raw */
    if (L->post_ffn_norm) {
        memset(tm->dh, 0, nd * sizeof(float));
        xd_rmsnorm_backward(tm->dh, G->post_ffn_norm, tm->dx, a->m_raw, L->post_ffn_norm, BT, d, eps);
        dm = tm->dh;
    }
    memset(tm->dsw, 0, (size_t)BT * ff * sizeof(float));
    xd_linear_backward(tm->dsw, G->w_down, NULL, dm, a->sw, L->w_down, BT, ff, d);
    lora_backward(tm, l, XD_LORA_DOWN, tm->dsw, dm, a->sw);
    memset(tm->dg, 0, (size_t)BT * ff * sizeof(float));
    memset(tm->du, 0, (size_t)BT * ff * sizeof(float));
    xd_swiglu_backward(tm->dg, tm->du, tm->dsw, a->g, a->u, (int64_t)BT * ff);
    /* dx2 = dL/d(x_mid): the residual path plus the MLP input path */
    memcpy(tm->dx2, tm->dx, nd * sizeof(float));
    const float *h2 = L->ffn_norm ? a->h2 : a->x_mid;
    float *dh2 = L->ffn_norm ? tm->dh : tm->dx2;
    if (L->ffn_norm) memset(tm->dh, 0, nd * sizeof(float));
    xd_linear_backward(dh2, G->w_gate, NULL, tm->dg, h2, L->w_gate, BT, d, ff);
    xd_linear_backward(dh2, G->w_up, NULL, tm->du, h2, L->w_up, BT, d, ff);
    lora_backward(tm, l, XD_LORA_GATE, dh2, tm->dg, h2);
    lora_backward(tm, l, XD_LORA_UP, dh2, tm->du, h2);
    if (L->ffn_norm) xd_rmsnorm_backward(tm->dx2, G->ffn_norm, tm->dh, a->x_mid, L->ffn_norm, BT, d, eps);

    /* ---- attention block: x_mid = x_in + post?(W_O · attn(q, k, v)) */
    const float *dor = tm->dx2;
    if (L->post_attn_norm) {
        memset(tm->dh, 0, nd * sizeof(float));
        xd_rmsnorm_backward(tm->dh, G->post_attn_norm, tm->dx2, a->o_raw, L->post_attn_norm, BT, d, eps);
        dor = tm->dh;
    }
    memset(tm->datt, 0, (size_t)BT * qd * sizeof(float));
    xd_linear_backward(tm->datt, G->wo, NULL, dor, a->att, L->wo, BT, qd, d);
    lora_backward(tm, l, XD_LORA_O, tm->datt, dor, a->att);
    memset(tm->dq, 0, (size_t)BT * qd * sizeof(float));
    memset(tm->dk, 0, (size_t)BT * kvd * sizeof(float));
    memset(tm->dv, 0, (size_t)BT * kvd * sizeof(float));
    const float *h1 = L->attn_norm ? a->h1 : a->x_in;
    if (c->student) {
        memset(tm->dqp, 0, (size_t)BT * qd * sizeof(float));
        memset(tm->dkp, 0, (size_t)BT * kvd * sizeof(float));
        memset(tm->dh_mix, 0, nd * sizeof(float));
        xd_mixer_dinputs din = {tm->dh_mix, tm->dq, tm->dk, tm->dv, tm->dqp, tm->dkp};
        if (xd_mixer_train_backward(c, l, L, G, &a->mx, &tm->mxs, &din, tm->datt, h1, a->q, a->k,
                                    a->v, tm->doc_start, tm->B, T))
            return -1;
    } else
    for (int b = 0; b < tm->B; b++) {
        size_t r = (size_t)b * T;
        xd_attn_train_backward(tm->dq + r * qd, tm->dk + r * kvd, tm->dv + r * kvd,
                               tm->datt + r * qd, a->probs + (size_t)b * c->n_head * T * T,
                               a->q + r * qd, a->k + r * kvd, a->v + r * kvd, T, c->n_head,
                               c->n_kv_head, hd);
    }
    xd_rope_pos_backward(tm->dq, BT, c->n_head, hd, qd, tm->pos, m->rope_inv_freq);
    xd_rope_pos_backward(tm->dk, BT, c->n_kv_head, hd, kvd, tm->pos, m->rope_inv_freq);
    if (c->student) { /* the mix gate's gradients are w.r.t. q, k before RoPE */
        add_inplace(tm->dq, tm->dqp, (size_t)BT * qd);
        add_inplace(tm->dk, tm->dkp, (size_t)BT * kvd);
    }
    float *dq = tm->dq, *dk = tm->dk;
    if (c->qk_norm) {
        /* gradients w.r.t. the raw projections (datt is free again: reuse it) */
        float *dq_raw = tm->datt, *dk_raw = tm->dk_raw;
        memset(dq_raw, 0, (size_t)BT * qd * sizeof(float));
        memset(dk_raw, 0, (size_t)BT * kvd * sizeof(float));
        if (c->qk_norm == XD_QKNORM_HEAD) {
            xd_rmsnorm_backward(dq_raw, G->q_norm, dq, a->q_raw, L->q_norm, BT * c->n_head, hd, eps);
            xd_rmsnorm_backward(dk_raw, G->k_norm, dk, a->k_raw, L->k_norm, BT * c->n_kv_head, hd, eps);
        } else {
            xd_rmsnorm_backward(dq_raw, G->q_norm, dq, a->q_raw, L->q_norm, BT, qd, eps);
            xd_rmsnorm_backward(dk_raw, G->k_norm, dk, a->k_raw, L->k_norm, BT, kvd, eps);
        }
        dq = dq_raw;
        dk = dk_raw;
    }
    /* dx = dL/d(x_in): residual path plus the q/k/v input path */
    memcpy(tm->dx, tm->dx2, nd * sizeof(float));
    float *dh1 = L->attn_norm ? tm->dh : tm->dx;
    if (L->attn_norm) memset(tm->dh, 0, nd * sizeof(float));
    if (c->student) add_inplace(dh1, tm->dh_mix, nd); /* the gates read h1 */
    xd_linear_backward(dh1, G->wq, G->bq, dq, h1, L->wq, BT, d, qd);
    xd_linear_backward(dh1, G->wk, G->bk, dk, h1, L->wk, BT, d, kvd);
    xd_linear_backward(dh1, G->wv, G->bv, tm->dv, h1, L->wv, BT, d, kvd);
    lora_backward(tm, l, XD_LORA_Q, dh1, dq, h1);
    lora_backward(tm, l, XD_LORA_K, dh1, dk, h1);
    lora_backward(tm, l, XD_LORA_V, dh1, tm->dv, h1);
    if (c->student) { /* the gates' pre-activation gradients, from the mixer's backward */
        lora_backward(tm, l, XD_LORA_IGATE, dh1, tm->mxs.dig_raw, h1);
        lora_backward(tm, l, XD_LORA_FGATE, dh1, tm->mxs.dfg_raw, h1);
    }
    if (L->attn_norm) xd_rmsnorm_backward(tm->dx, G->attn_norm, tm->dh, a->x_in, L->attn_norm, BT, d, eps);
    return 0;
}

/* The backward from dL/d(final norm output) [BT][d] (may be tm->dh) down to
 * the embedding, after a forward over the same tokens. */
static int backward_from_norm(xd_trainer_model *tm, const int32_t *tokens, const float *dnorm) {
    const xd_model *m = tm->m;
    const xd_config *c = &m->cfg;
    int BT = tm->B * tm->T, d = c->d_model;
    memset(tm->dx, 0, (size_t)BT * d * sizeof(float));
    xd_rmsnorm_backward(tm->dx, tm->grads.final_norm, dnorm, tm->x_final, m->final_norm, BT, d,
                        c->norm_eps);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        if (layer_backward(tm, l)) return xd_err_prefix("training backward, layer %d", l);
        if (tm->layer_done) tm->layer_done(tm->layer_done_ctx, l);
    }
    xd_embedding_backward(tm->grads.embed, tm->dx, tokens, BT, d);
    return 0;
}

static int tm_step(xd_trainer_model *tm, const int32_t *tokens, const int32_t *targets,
                   const int32_t *pos, const int32_t *doc_start, int backward, float grad_scale,
                   double *loss_sum, int64_t *n_valid) {
    const xd_model *m = tm->m;
    const xd_config *c = &m->cfg;
    int B = tm->B, T = tm->T, BT = B * T, d = c->d_model, V = c->vocab_size;
    for (int i = 0; i < BT; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return xd_err("training: token id %d at %d is out of range [0, %d)", tokens[i], i, V);
        if (targets && targets[i] >= V)
            return xd_err("training: target id %d at %d is out of range [0, %d)", targets[i], i, V);
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            tm->pos[i] = pos ? pos[i] : t;
            tm->doc_start[i] = doc_start ? doc_start[i] : 0;
        }
    xd_embedding_forward(tm->acts[0].x_in, m->embed, tokens, BT, d);
    for (int l = 0; l < c->n_layer; l++)
        if (layer_forward(tm, l)) return xd_err_prefix("training forward, layer %d", l);
    xd_rmsnorm(tm->x_norm, tm->x_final, m->final_norm, BT, d, c->norm_eps);
    if (!targets) return 0;
    xd_linear(tm->logits, tm->x_norm, m->lm_head, NULL, BT, d, V);
    int64_t valid = 0;
    for (int i = 0; i < BT; i++) valid += targets[i] >= 0;
    if (tm->kd_ids)
        *loss_sum = xd_distill_loss(tm->logits, tm->logits, targets, tm->kd_ids, tm->kd_vals, BT,
                                    V, tm->kd_k, tm->kd_w_ce, tm->kd_w_kl, grad_scale, &tm->kd_ce,
                                    &tm->kd_kl);
    else *loss_sum = xd_cross_entropy(tm->logits, tm->logits, targets, BT, V, grad_scale);
    *n_valid = valid;
    if (!backward) return 0;

    /* LM head; the tied head's gradient lands on the embedding */
    memset(tm->dh, 0, (size_t)BT * d * sizeof(float));
    xd_linear_backward(tm->dh, tm->grads.lm_head, NULL, tm->logits, tm->x_norm, m->lm_head, BT, d, V);
    return backward_from_norm(tm, tokens, tm->dh);
}

int xd_tm_step(xd_trainer_model *tm, const int32_t *tokens, const int32_t *targets,
               const int32_t *pos, const int32_t *doc_start, int backward, float grad_scale,
               double *loss_sum, int64_t *n_valid) {
    /* bf16 mode: one bf16 copy of each weight for this forward + backward */
    if (backward && !tm->grads.embed && !(tm->lora && tm->lora->grad))
        return xd_err("training: backward asked of a forward-only trainer");
    int bf16 = xd_bf16_active();
    if (bf16) xd_bf16_cache_begin();
    int rc = tm_step(tm, tokens, targets, pos, doc_start, backward, grad_scale, loss_sum, n_valid);
    if (bf16) xd_bf16_cache_end();
    return rc;
}

int xd_tm_backward_hidden(xd_trainer_model *tm, const int32_t *tokens, const float *dnorm) {
    if (!tm->grads.embed && !(tm->lora && tm->lora->grad))
        return xd_err("training: backward asked of a forward-only trainer");
    int bf16 = xd_bf16_active();
    if (bf16) xd_bf16_cache_begin();
    int rc = backward_from_norm(tm, tokens, dnorm);
    if (bf16) xd_bf16_cache_end();
    return rc;
}
