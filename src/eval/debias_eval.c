/* Evaluating a debiased classifier (debias_eval.h). */
#include "debias_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/progress.h"
#include "eval/bootstrap.h"
#include "eval/fairness.h"
#include "train/train_model.h"

void xd_debias_eval_defaults(xd_debias_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->pool = XD_POOL_LAST;
    o->batch = 16;
    xd_attack_defaults(&o->attack);
    o->boot = 1000;
    o->level = 0.95;
    o->seed = 1;
}

int xd_debias_encode(xd_model *m, const xd_clf_data *data, xd_pool_mode pool, int batch,
                     const xd_head *head, float *rep, int32_t *pred) {
    int B = batch, T = data->max_len, d = m->cfg.d_model, rc = -1;
    xd_trainer_model tm;
    xd_head_acts ha;
    memset(&ha, 0, sizeof ha);
    size_t BT = (size_t)B * T;
    int32_t *tok = malloc(BT * sizeof *tok), *pos = malloc(BT * sizeof *pos),
            *ds = malloc(BT * sizeof *ds), *len = malloc((size_t)B * sizeof *len);
    int64_t *ex = malloc((size_t)B * sizeof *ex);
    float *pooled = malloc((size_t)B * d * sizeof(float));
    if (xd_tm_init_ex(&tm, m, B, T, 0)) goto out;
    if (!tok || !pos || !ds || !len || !ex || !pooled || (head && xd_head_acts_alloc(&ha, head, B))) {
        xd_err("encode: out of memory");
        goto done;
    }
    for (int64_t e0 = 0; e0 < data->n; e0 += B) {
        int n = data->n - e0 < B ? (int)(data->n - e0) : B;
        for (int b = 0; b < B; b++) ex[b] = b < n ? e0 + b : e0;
        xd_clf_fill(data, ex, B, T, tok, pos, ds, len);
        double s;
        int64_t c;
        if (xd_tm_step(&tm, tok, NULL, pos, ds, 0, 0.0f, &s, &c) ||
            xd_pool_forward(pooled, tm.x_norm, len, B, T, d, pool))
            goto done;
        memcpy(rep + (size_t)e0 * d, pooled, (size_t)n * d * sizeof(float));
        if (!head) continue;
        const float *lg = xd_head_forward(head, &ha, pooled, n, 0, 0);
        for (int b = 0; b < n; b++) {
            int best = 0;
            for (int k = 1; k < head->n_out; k++)
                if (lg[(size_t)b * head->n_out + k] > lg[(size_t)b * head->n_out + best]) best = k;
            pred[e0 + b] = best;
        }
    }
    rc = 0;
done:
    xd_tm_free(&tm);
out:
    xd_head_acts_free(&ha);
    free(tok), free(pos), free(ds), free(len), free(ex), free(pooled);
    return rc;
}

/* Statistics of a bootstrap resample of the test examples. */
typedef struct {
    const int32_t *pred, *y, *a;
    int C, A;
} stat_ctx;

static double stat_acc(const int *idx, int n, void *c) {
    const stat_ctx *s = c;
    return xd_accuracy(s->pred, s->y, idx, n);
}
static double stat_bacc(const int *idx, int n, void *c) {
    const stat_ctx *s = c;
    return xd_balanced_accuracy(s->pred, s->a, s->A, idx, n);
}
static double stat_gap(const int *idx, int n, void *c) {
    const stat_ctx *s = c;
    return xd_tpr_gap_rms(s->pred, s->y, s->C, s->a, s->A, idx, n);
}

static int with_ci(xd_boot_fn f, stat_ctx *c, int n, const xd_debias_eval_opts *o, uint64_t salt,
                   xd_ci *out) {
    out->value = f(NULL, n, c);
    return xd_bootstrap_ci_fn(f, c, n, o->boot, o->seed ^ salt, o->level, &out->lo, &out->hi);
}

int xd_debias_evaluate(xd_model *m, const xd_head *head, const xd_clf_data *train,
                       const xd_clf_data *test, const xd_debias_eval_opts *o,
                       xd_debias_result *res) {
    memset(res, 0, sizeof *res);
    const xd_labeled *tl = train->lab, *sl = test->lab;
    if (tl->n_attr > XD_DEBIAS_MAX_ATTR)
        return xd_err("debias eval: at most %d attributes", XD_DEBIAS_MAX_ATTR);
    int d = m->cfg.d_model, ntr = (int)train->n, nte = (int)test->n, rc = -1;
    if (o->attack_train_max > 0 && ntr > o->attack_train_max) ntr = o->attack_train_max;
    float *rtr = malloc((size_t)ntr * d * sizeof(float)), *rte = malloc((size_t)nte * d * sizeof(float));
    int32_t *pred = malloc((size_t)nte * sizeof *pred), *apred = malloc((size_t)nte * sizeof *apred);
    xd_clf_data sub = *train;
    sub.n = ntr;
    if (!rtr || !rte || !pred || !apred) { xd_err("debias eval: out of memory"); goto done; }
    double t0 = xd_now();
    if (xd_debias_encode(m, test, o->pool, o->batch, head, rte, pred) ||
        xd_debias_encode(m, &sub, o->pool, o->batch, NULL, rtr, NULL))
        goto done;
    res->encode_s = xd_now() - t0;
    res->n_test = nte;
    res->n_train = ntr;
    stat_ctx c = {pred, sl->label.id, NULL, tl->label.n_classes, 0};
    if (with_ci(stat_acc, &c, nte, o, 0x41, &res->task_acc)) goto done;
    t0 = xd_now();
    for (int a = 0; a < tl->n_attr; a++) {
        snprintf(res->attr[a].field, sizeof res->attr[a].field, "%s", tl->attr[a].field);
        int A = tl->attr[a].n_classes;
        res->attr[a].n_classes = A;
        xd_attack_opts ao = o->attack;
        ao.seed = o->attack.seed * 131 + (uint64_t)a;
        if (xd_attack(rtr, tl->attr[a].id, ntr, rte, nte, d, A, &ao, apred)) goto done;
        stat_ctx la = {apred, NULL, sl->attr[a].id, 0, A};
        stat_ctx ga = {pred, sl->label.id, sl->attr[a].id, tl->label.n_classes, A};
        if (with_ci(stat_bacc, &la, nte, o, 0x4c00 + (uint64_t)a, &res->attr[a].leakage) ||
            with_ci(stat_gap, &ga, nte, o, 0x4700 + (uint64_t)a, &res->attr[a].tpr_gap))
            goto done;
        res->n_attr = a + 1;
    }
    res->attack_s = xd_now() - t0;
    rc = 0;
done:
    free(rtr), free(rte), free(pred), free(apred);
    return rc;
}
