/* Stage II: CE + top-k KL distillation (stage2.h). */
#include "stage2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/distill_loss.h"
#include "kernels/kernels.h"
#include "train_model.h"

struct xd_stage2 {
    xd_objective ob;
    const xd_topk *f;
    int k, T;
    float w_ce, w_kl;
    int32_t *ids;   /* [B·T][k] */
    float *vals;
    double last_ce, last_kl; /* the last micro-batch's per-token means */
    xd_model *teacher;
    xd_trainer_model ttm;    /* teacher forward for the validation KL */
    double val_kl;
};

static int64_t ob_count(xd_objective *ob, const xd_batch *bb, int B, int T) {
    (void)ob;
    int64_t n = 0;
    for (int i = 0; i < B * T; i++) n += bb->tgt[i] >= 0;
    return n;
}

static int ob_step(xd_objective *ob, xd_trainer_model *tm, const xd_batch *bb, uint64_t row0,
                   int backward, float grad_scale, double *loss_sum) {
    xd_stage2 *s2 = ob->ctx;
    if (xd_topk_read_rows(s2->f, row0, (uint64_t)tm->B, s2->ids, s2->vals)) return -1;
    /* a context token (target −1, instruction data) is predicted by no loss, the KL
     * included, so every term is one that ob_count counts */
    size_t BT = (size_t)tm->B * tm->T;
    for (size_t i = 0; i < BT; i++)
        if (bb->tgt[i] < 0)
            for (int j = 0; j < s2->k; j++) s2->ids[i * (size_t)s2->k + j] = -1;
    tm->kd_ids = s2->ids;
    tm->kd_vals = s2->vals;
    tm->kd_k = s2->k;
    tm->kd_w_ce = s2->w_ce;
    tm->kd_w_kl = s2->w_kl;
    int64_t c;
    int rc = xd_tm_step(tm, bb->tok, bb->tgt, bb->pos, bb->ds, backward, grad_scale, loss_sum, &c);
    tm->kd_ids = NULL;
    tm->kd_vals = NULL;
    if (rc) return -1;
    s2->last_ce = c ? tm->kd_ce / (double)c : 0;
    s2->last_kl = c ? tm->kd_kl / (double)c : 0; /* per target (all positions without a mask) */
    return 0;
}

int xd_stage2_eval(xd_stage2 *s2, xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *ce, double *kl) {
    int64_t n;
    if (xd_eval_loss(tm, data, max_windows, ce, &n)) return -1;
    *kl = NAN;
    if (!s2->teacher) return 0;
    int B = tm->B, T = tm->T, V = tm->m->cfg.vocab_size, d = tm->m->cfg.d_model, k = s2->k;
    uint64_t nw;
    if (xd_val_windows(data, T, max_windows, &nw)) return -1;
    size_t BT = (size_t)B * T;
    xd_batch bb = {0};
    int rc = -1;
    double kl_sum = 0;
    int64_t rows = 0;
    if (xd_batch_alloc(&bb, B, T)) goto done;
    for (uint64_t k0 = 0; k0 < nw; k0 += (uint64_t)B) {
        double s;
        int64_t c;
        if (xd_val_batch(data, B, T, k0, nw, &bb) ||
            xd_tm_step(&s2->ttm, bb.tok, NULL, bb.pos, bb.ds, 0, 0, &s, &c))
            goto done;
        xd_linear(s2->ttm.logits, s2->ttm.x_norm, s2->teacher->lm_head, NULL, (int)BT, d, V);
        for (size_t i = 0; i < BT; i++) {
            int32_t *id = s2->ids + i * k;
            if (bb.tgt[i] < 0) { /* padding: no teacher set, no KL */
                for (int j = 0; j < k; j++) id[j] = -1;
                continue;
            }
            if (xd_topk_select(s2->ttm.logits + i * V, V, k, id, s2->vals + i * k)) {
                xd_err_prefix("stage 2 validation, teacher logits");
                goto done;
            }
            rows++;
        }
        tm->kd_ids = s2->ids;
        tm->kd_vals = s2->vals;
        tm->kd_k = k;
        tm->kd_w_ce = 0;
        tm->kd_w_kl = 1;
        int r = xd_tm_step(tm, bb.tok, bb.tgt, bb.pos, bb.ds, 0, 0, &s, &c);
        tm->kd_ids = NULL;
        tm->kd_vals = NULL;
        if (r) goto done;
        kl_sum += tm->kd_kl;
    }
    *kl = rows ? kl_sum / (double)rows : NAN;
    rc = 0;
done:
    xd_batch_free(&bb);
    return rc;
}

static int ob_eval(xd_objective *ob, xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *loss, char *json, size_t cap) {
    xd_stage2 *s2 = ob->ctx;
    double ce, kl;
    if (xd_stage2_eval(s2, tm, data, max_windows, &ce, &kl)) return -1;
    *loss = ce; /* validation loss = the student's next-token CE */
    s2->val_kl = kl;
    if (isfinite(kl)) snprintf(json, cap, ",\"val_kl\":%.8g", kl);
    else json[0] = 0;
    return 0;
}

static void ob_log(xd_objective *ob, char *json, size_t cap) {
    xd_stage2 *s2 = ob->ctx;
    snprintf(json, cap, ",\"ce\":%.8g,\"kl\":%.8g", s2->last_ce, s2->last_kl);
}

xd_stage2 *xd_stage2_create(const xd_topk *f, const xd_model *student, const xd_tokdata *data,
                            const xd_train_opts *o, const xd_stage2_opts *so) {
    const xd_topk_header *h = xd_topk_header_of(f);
    const char *fp = xd_topk_path(f);
    if ((int)h->vocab_size != student->cfg.vocab_size) {
        xd_err("%s: vocab_size %u does not match the student's %d (%s)", fp, h->vocab_size,
               student->cfg.vocab_size, student->path);
        return NULL;
    }
    if (student->cfg.teacher_hash && h->teacher_hash != student->cfg.teacher_hash) {
        xd_err("%s: teacher_hash 0x%016llx does not match the teacher the student was converted "
               "from (0x%016llx, in %s/config.json): these logits come from another teacher",
               fp, (unsigned long long)h->teacher_hash,
               (unsigned long long)student->cfg.teacher_hash, student->path);
        return NULL;
    }
    if (so->teacher && xd_topk_check_teacher(f, xd_model_teacher_hash(so->teacher), so->teacher->path))
        return NULL;
    if (xd_topk_check_data(f, data)) return NULL;
    if ((int)h->seq != o->seq) {
        xd_err("%s: seq %u: the logits were made for rows of %u tokens, stage 2 asks --seq %d",
               fp, h->seq, h->seq, o->seq);
        return NULL;
    }
    uint64_t need = (uint64_t)o->steps * (uint64_t)o->accum * (uint64_t)o->batch;
    if (h->n_rows < need) {
        xd_err("%s: n_rows %llu: stage 2 needs %llu rows (--steps %lld x --accum %d x --batch "
               "%d); make the logits with --rows %llu or more%s", fp,
               (unsigned long long)h->n_rows, (unsigned long long)need, (long long)o->steps,
               o->accum, o->batch, (unsigned long long)need,
               h->n_rows < h->rows_total ? " (this file is incomplete: rerun teacher-logits)" : "");
        return NULL;
    }
    xd_stage2 *s2 = calloc(1, sizeof *s2);
    if (!s2) { xd_err("out of memory"); return NULL; }
    s2->f = f;
    s2->k = (int)h->k;
    s2->T = o->seq;
    s2->w_ce = so->w_ce;
    s2->w_kl = so->w_kl;
    s2->teacher = so->teacher;
    s2->val_kl = NAN;
    int B = xd_train_rows_per_rank(o->batch); /* a rank's rows of each micro-batch */
    if (B < 0) {
        free(s2);
        return NULL;
    }
    size_t n = (size_t)B * o->seq * h->k;
    s2->ids = malloc(n * sizeof(int32_t));
    s2->vals = malloc(n * sizeof(float));
    if (!s2->ids || !s2->vals ||
        (so->teacher && xd_tm_init_ex(&s2->ttm, so->teacher, B, o->seq, 0))) {
        if (!s2->ids || !s2->vals) xd_err("out of memory");
        xd_stage2_free(s2);
        return NULL;
    }
    s2->ob = (xd_objective){.ctx = s2, .count = ob_count, .step = ob_step, .eval = ob_eval,
                            .log_extra = ob_log};
    return s2;
}

void xd_stage2_free(xd_stage2 *s2) {
    if (!s2) return;
    if (s2->teacher) xd_tm_free(&s2->ttm);
    free(s2->ids);
    free(s2->vals);
    free(s2);
}

xd_objective *xd_stage2_objective(xd_stage2 *s2) { return &s2->ob; }
