/* Training forward/backward of the hybrid mixer (mixer_train.h). */
#include "mixer_train.h"

#include <string.h>

#include "core/error.h"
#include "kernels/hybrid_ops.h"
#include "kernels/kernels.h"
#include "kernels/mlstm.h"
#include "kernels/train_ops.h"
#include "model/student.h"

static float *take(float *base, size_t *cur, size_t n) {
    float *p = base ? base + *cur : NULL;
    *cur += n;
    return p;
}

size_t xd_mixer_acts_layout(const xd_config *c, int B, int T, xd_mixer_acts *a, float *base) {
    size_t BT = (size_t)B * T, nh = (size_t)c->n_head, hd = (size_t)c->head_dim;
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
    a->cache = take(base, &cur, (size_t)B * (size_t)xd_mlstm_cache_floats(T, &mc));
    a->probs = take(base, &cur, (size_t)B * nh * T * T);
    return cur;
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
    return cur;
}

int xd_mixer_train_forward(const xd_config *c, const xd_layer *L, xd_mixer_acts *a,
                           const float *h1, const float *q, const float *k, const float *v,
                           const int32_t *doc_start, int B, int T, float *att) {
    int nh = c->n_head, nkv = c->n_kv_head, hd = c->head_dim;
    int qd = nh * hd, kvd = nkv * hd, dphi = 2 * hd, BT = B * T;
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    int64_t cf = xd_mlstm_cache_floats(T, &mc);
    for (int b = 0; b < B; b++) { /* SWA branch */
        size_t r = (size_t)b * T;
        xd_attn_train_forward(a->hs + r * qd, a->probs + (size_t)b * nh * T * T, q + r * qd,
                              k + r * kvd, v + r * kvd, T, nh, nkv, hd,
                              doc_start ? doc_start + r : NULL, c->window, c->sinks);
    }
    xd_student_mlstm_inputs(c, L, BT, h1, q, k, v, a->phq, a->phk, a->ve, a->ig_raw, a->fg_raw,
                            a->ig, a->fg);
    for (int b = 0; b < B; b++) { /* mLSTM branch */
        size_t r = (size_t)b * T;
        xd_mlstm_in in = {a->phq + r * nh * dphi, a->phk + r * nh * dphi, a->ve + r * qd,
                          a->ig + r * nh, a->fg + r * nh, doc_start ? doc_start + r : NULL};
        if (xd_mlstm_chunk_forward(a->hm + r * qd, a->cache + (size_t)b * cf, NULL, &in, NULL, T,
                                   &mc))
            return -1;
    }
    xd_mix_forward(att, a->o, a->hm, a->hs, a->qp, qd, a->kp, kvd, v, kvd, L->w_mix, L->b_mix,
                   BT, nh, nkv, hd);
    return 0;
}

int xd_mixer_train_backward(const xd_config *c, const xd_layer *L, xd_layer *G,
                            const xd_mixer_acts *a, const xd_mixer_scratch *s,
                            const xd_mixer_dinputs *din, const float *datt, const float *h1,
                            const float *q, const float *k, const float *v,
                            const int32_t *doc_start, int B, int T) {
    int nh = c->n_head, nkv = c->n_kv_head, hd = c->head_dim, d = c->d_model;
    int qd = nh * hd, kvd = nkv * hd, dphi = 2 * hd, group = nh / nkv, BT = B * T;
    size_t nq = (size_t)BT * qd, ng = (size_t)BT * nh, nphi = (size_t)BT * nh * dphi;
    xd_mlstm_cfg mc = xd_student_mlstm_cfg(c);
    int64_t cf = xd_mlstm_cache_floats(T, &mc);
    int want_qkv = din->dq || din->dk || din->dv;

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
        if (xd_mlstm_chunk_backward(&g, NULL, s->dhm + r * qd, NULL, a->hm + r * qd,
                                    a->cache + (size_t)b * cf, &in, NULL, T, &mc))
            return -1;
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
