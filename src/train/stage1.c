/* Stage I: per-layer MSE alignment of the mixer (stage1.h). */
#include "stage1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/train_ops.h"
#include "mixer_train.h"
#include "train_model.h"

const char *const xd_mixer_param_names[] = {"self_attn.feature_map_q.", "self_attn.feature_map_k.",
                                            "self_attn.igate.", "self_attn.fgate.",
                                            "self_attn.mix."};
const int xd_n_mixer_param_names = 5;

struct xd_stage1 {
    xd_objective ob;
    xd_model *teacher;
    xd_trainer_model ttm; /* the teacher's forward-only activations */
    int n_layer;
    double *mse;          /* the last step's per-layer MSE */
    double *val_mse;
    float *diff;          /* [BT][qd] */
};

/* Student mixer of layer l on the teacher's activations: att_s into
 * a->att; returns Σ (att_s − att_t)² and, with backward, accumulates the
 * gradient of grad_scale times it. */
static int layer_step(xd_stage1 *s1, xd_trainer_model *tm, int l, int backward, float grad_scale,
                      double *sq) {
    const xd_config *c = &tm->m->cfg;
    const xd_layer_acts *ta = &s1->ttm.acts[l];
    xd_layer_acts *a = &tm->acts[l];
    int B = tm->B, T = tm->T, BT = B * T, hd = c->head_dim;
    int qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    const float *h1 = ta->h1 ? ta->h1 : ta->x_in;
    /* the mix gate reads q, k before RoPE: undo the teacher's rotation */
    memcpy(a->mx.qp, ta->q, (size_t)BT * qd * sizeof(float));
    memcpy(a->mx.kp, ta->k, (size_t)BT * kvd * sizeof(float));
    xd_rope_pos_backward(a->mx.qp, BT, c->n_head, hd, qd, s1->ttm.pos, tm->m->rope_inv_freq);
    xd_rope_pos_backward(a->mx.kp, BT, c->n_kv_head, hd, kvd, s1->ttm.pos, tm->m->rope_inv_freq);
    if (xd_mixer_train_forward(c, l, &tm->m->layers[l], &a->mx, h1, ta->q, ta->k, ta->v,
                               s1->ttm.doc_start, B, T, a->att))
        return -1;
    size_t n = (size_t)BT * qd;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        float d = a->att[i] - ta->att[i];
        s += (double)d * d;
        s1->diff[i] = 2.0f * grad_scale * d; /* ∂(grad_scale·Σd²)/∂att_s */
    }
    *sq = s;
    if (!backward) return 0;
    xd_mixer_dinputs din = {0};
    return xd_mixer_train_backward(c, l, &tm->m->layers[l], &tm->grads.layers[l], &a->mx, &tm->mxs,
                                   &din, s1->diff, h1, ta->q, ta->k, ta->v, s1->ttm.doc_start, B,
                                   T);
}

/* Teacher forward, then every layer: Σ_l Σ (att_s − att_t)² in *loss and
 * per-layer MSE in mse[]. */
static int batch_step(xd_stage1 *s1, xd_trainer_model *tm, const xd_batch *bb, int backward,
                      float grad_scale, double *loss, double *mse) {
    double ls;
    int64_t nv;
    if (xd_tm_step(&s1->ttm, bb->tok, NULL, bb->pos, bb->ds, 0, 0, &ls, &nv)) return -1;
    const xd_config *c = &tm->m->cfg;
    double per = (double)tm->B * tm->T * c->n_head * c->head_dim, tot = 0;
    for (int l = 0; l < c->n_layer; l++) {
        double sq;
        if (layer_step(s1, tm, l, backward, grad_scale, &sq))
            return xd_err_prefix("stage 1, layer %d", l);
        if (mse) mse[l] = sq / per;
        tot += sq;
    }
    *loss = tot;
    return 0;
}

static int64_t ob_count(xd_objective *ob, const xd_batch *bb, int B, int T) {
    (void)bb;
    xd_stage1 *s1 = ob->ctx;
    const xd_config *c = &s1->teacher->cfg;
    return (int64_t)B * T * c->n_head * c->head_dim;
}

static int ob_step(xd_objective *ob, xd_trainer_model *tm, const xd_batch *bb, uint64_t row0,
                   int backward, float grad_scale, double *loss_sum) {
    (void)row0;
    xd_stage1 *s1 = ob->ctx;
    return batch_step(s1, tm, bb, backward, grad_scale, loss_sum, s1->mse);
}

int xd_stage1_eval(xd_stage1 *s1, xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *mse, double *mean) {
    int B = tm->B, T = tm->T, L = s1->n_layer;
    uint64_t nw;
    if (xd_val_windows(data, T, max_windows, &nw)) return -1;
    xd_batch bb = {0};
    double *m = calloc((size_t)L, sizeof(double));
    int rc = -1;
    if (xd_batch_alloc(&bb, B, T) || !m) { xd_err("out of memory"); goto done; }
    for (int l = 0; l < L; l++) mse[l] = 0;
    uint64_t batches = 0;
    for (uint64_t k0 = 0; k0 < nw; k0 += (uint64_t)B, batches++) {
        double loss;
        /* rows past the last window repeat padding: they are part of every
         * batch alike, so the mean over batches stays comparable */
        if (xd_val_batch(data, B, T, k0, nw, &bb) || batch_step(s1, tm, &bb, 0, 0, &loss, m)) goto done;
        for (int l = 0; l < L; l++) mse[l] += m[l];
    }
    *mean = 0;
    for (int l = 0; l < L; l++) {
        mse[l] /= (double)batches;
        *mean += mse[l] / L;
    }
    rc = 0;
done:
    xd_batch_free(&bb);
    free(m);
    return rc;
}

static void json_list(char *json, size_t cap, const char *key, const double *v, int n) {
    size_t k = (size_t)snprintf(json, cap, ",\"%s\":[", key);
    for (int l = 0; l < n && k < cap; l++)
        k += (size_t)snprintf(json + k, cap - k, "%s%.6g", l ? "," : "", v[l]);
    if (k + 2 <= cap) snprintf(json + k, cap - k, "]");
    else json[0] = 0; /* too long for the log line: left out rather than cut */
}

static int ob_eval(xd_objective *ob, xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *loss, char *json, size_t cap) {
    xd_stage1 *s1 = ob->ctx;
    double mean;
    if (xd_stage1_eval(s1, tm, data, max_windows, s1->val_mse, &mean)) return -1;
    *loss = mean * s1->n_layer; /* the same scale as the training loss: Σ_l MSE_l */
    json_list(json, cap, "val_layer_mse", s1->val_mse, s1->n_layer);
    return 0;
}

static void ob_log(xd_objective *ob, char *json, size_t cap) {
    xd_stage1 *s1 = ob->ctx;
    json_list(json, cap, "layer_mse", s1->mse, s1->n_layer);
}

xd_stage1 *xd_stage1_create(xd_model *teacher, const xd_model *student, int B, int T) {
    const xd_config *a = &teacher->cfg, *b = &student->cfg;
    if (a->student || !b->student) {
        xd_err("stage 1 needs a teacher (a transformer) and a student (made by convert)");
        return NULL;
    }
    if (a->arch != b->arch || a->n_layer != b->n_layer || a->d_model != b->d_model ||
        a->n_head != b->n_head || a->n_kv_head != b->n_kv_head || a->head_dim != b->head_dim ||
        a->d_ff != b->d_ff || a->vocab_size != b->vocab_size) {
        xd_err("%s: the student does not have the teacher's architecture and shapes (was it "
               "converted from %s?)", student->path, teacher->path);
        return NULL;
    }
    xd_stage1 *s1 = calloc(1, sizeof *s1);
    if (!s1) { xd_err("out of memory"); return NULL; }
    s1->teacher = teacher;
    s1->n_layer = a->n_layer;
    s1->mse = calloc((size_t)a->n_layer, sizeof(double));
    s1->val_mse = calloc((size_t)a->n_layer, sizeof(double));
    s1->diff = malloc((size_t)B * T * a->n_head * a->head_dim * sizeof(float));
    if (!s1->mse || !s1->val_mse || !s1->diff || xd_tm_init_ex(&s1->ttm, teacher, B, T, 0)) {
        if (!s1->diff) xd_err("out of memory");
        xd_stage1_free(s1);
        return NULL;
    }
    s1->ob = (xd_objective){.ctx = s1, .count = ob_count, .step = ob_step, .eval = ob_eval,
                            .log_extra = ob_log};
    return s1;
}

void xd_stage1_free(xd_stage1 *s1) {
    if (!s1) return;
    xd_tm_free(&s1->ttm);
    free(s1->mse);
    free(s1->val_mse);
    free(s1->diff);
    free(s1);
}

xd_objective *xd_stage1_objective(xd_stage1 *s1) { return &s1->ob; }
