/* Modular DiffPruning debiasing on the trainer (debias.h). One run struct per phase holds
 * the objective: its own parameters (the diff's w, log α in the first phase, the heads),
 * the base θ₀ the model is re-materialised from before every step, and the batch state. */
#include "debias.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attacker.h"
#include "checkpoint.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "io/atomic.h"
#include "kernels/hard_concrete.h"
#include "kernels/mmd.h"
#include "kernels/pair_dist.h"
#include "kernels/train_ops.h"
#include "model/clf_head.h"
#include "train_model.h"

#define MAX_ADV 16
#define PAR_MIN 65536 /* shorter loops stay on one thread */

void xd_debias_defaults(xd_debias_opts *d) {
    memset(d, 0, sizeof *d);
    d->mode = XD_DEBIAS_DIFF;
    d->pool = XD_POOL_LAST;
    d->max_len = 96;
    d->share = 0.05;
    d->log_alpha_init = 5.0f;
    d->l0_weight = 1.25e-7f;
    d->stretch_l = -1.5f;
    d->stretch_r = 1.5f;
    d->lr_alpha = 0.1f;
    d->lr_head = 1e-4f;
    d->lr_adv = 1e-4f;
    d->head_dropout = 0.3f;
    d->adv_dropout = 0.3f;
    d->adv_heads = 5;
    d->adv_lambda = 1.0f;
    d->adv_lambda_fixed = -1.0f;
    d->mmd_bank = 64;
    d->seed = 1;
    d->name = "task";
}

enum { PH_FULL = XD_DEBIAS_PHASE_FULL, PH_MASK = XD_DEBIAS_PHASE_MASK, PH_FIXMASK = XD_DEBIAS_PHASE_FIXMASK };

typedef struct xd_debias_run {
    xd_objective ob;
    xd_param_groups own;
    xd_debias_opts o;
    int phase;
    xd_model *m;
    const float *theta0;      /* [arena_floats] the base the diff is added to */
    /* the weights that get a diff (all of the model's) */
    int nt;
    xd_weight *tw;
    size_t *toff, *woff, n_w; /* offsets into m->arena and into w */
    float *w, *dw, *log_alpha, *dlog_alpha; /* into own.param / own.grad */
    float *z, *s;             /* [n_w] PH_MASK: this step's sample and its s */
    uint8_t *keep;            /* [n_w] PH_FIXMASK: the entries that train */
    xd_head head, adv[MAX_ADV];
    xd_head_acts ha, aa[MAX_ADV];
    int head_trains, n_adv, adv_col, n_classes, n_attr_classes;
    const xd_clf_data *train, *val;
    int64_t *perm, perm_epoch;
    int B, T;                 /* the trainer's rows: n_ex, or 2 · n_ex with pairs */
    int n_ex, pairs;          /* examples per batch; pairs: n_ex when each example's
                               * counterfactual rides in rows n_ex .. 2·n_ex − 1, else 0 */
    int64_t *ex;
    int32_t *len, *lab, *att; /* [B] */
    uint64_t batch_cursor;
    float *pooled, *dpooled, *dadv, *dnorm; /* [B][d], [B][d], [B][d], [B·T][d] */
    float *dconf;             /* [adversary rows][attribute classes]: the confusion term's
                               * dlogits */
    int32_t *att_tok;         /* adv_tokens: [B·T] each token row's attribute (−1: padding) */
    float *dadv_tok;          /* adv_tokens: [B·T][d] the heads' dx on the token rows */
    float *bal;               /* balance: [classes][attribute values] the training rows' weights */
    float *row_w;             /* balance: [B] this batch's weights */
    int adv_in;               /* the adversaries' input width: d, + the classes if conditional */
    float *advx, *dadvx;      /* conditional: [B][adv_in] their input and its gradient */
    /* the MMD term's bank (in the own arena, not trained, so checkpoints keep it):
     * [classes][groups][mmd_bank][d] rows and per (class, group) {count, next slot} */
    int n_groups, mmd_k;
    float *bank, *bank_fill;
    float *mmd_rows;             /* [groups·mmd_k][d] gathered rows of one class */
    float *mmd_w;                /* [d] linear kernel: the class's inverse variances */
    double task_sum, adv_sum, conf_sum, mmd_sum, pair_sum, l0;
    int64_t n_seen;
} run;

/* ---- the model's weights from the diff: θ = θ₀ + z ⊙ w (z = 1 without a mask) ---------- */

static uint64_t step_seed(const run *r, int64_t step, int t) {
    return xd_mix64(r->o.seed ^ xd_mix64(((uint64_t)step << 20) ^ (uint64_t)t ^ 0x5bd1e995ull));
}

/* train != 0: a hard-concrete sample for step `step`; else the eval-time mask. */
static void materialize(run *r, int64_t step, int train) {
    float *arena = r->m->arena;
    for (int t = 0; t < r->nt; t++) {
        size_t n = (size_t)(r->tw[t].rows * r->tw[t].cols);
        float *th = arena + r->toff[t];
        const float *b = r->theta0 + r->toff[t], *w = r->w + r->woff[t];
        if (r->phase != PH_MASK) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
            for (size_t i = 0; i < n; i++) th[i] = b[i] + w[i];
            continue;
        }
        float *z = r->z + r->woff[t], *s = r->s + r->woff[t];
        const float *la = r->log_alpha + r->woff[t];
        if (train) {
            /* the uniforms go into s, which the sample then overwrites element by element */
            xd_hc_uniforms(s, (int64_t)n, step_seed(r, step, t), 0);
            xd_hc_sample_forward(z, s, la, s, (int64_t)n, r->o.stretch_l, r->o.stretch_r);
        } else
            xd_hc_eval_mask(z, la, (int64_t)n, r->o.stretch_l, r->o.stretch_r);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) th[i] = b[i] + z[i] * w[i];
    }
}

/* --adv-refit: the adversary heads (freshly initialised) trained as the post-hoc attacker on
 * every row of the bank, labelled with its group; nothing to do while the bank is empty. */
static float *bank_rows(const run *r, int c, int g, int *count);

static int adv_refit(run *r, int64_t step) {
    int d = r->m->cfg.d_model, n = 0, cnt;
    for (int c = 0; c < r->n_classes; c++)
        for (int g = 0; g < r->n_groups; g++) {
            bank_rows(r, c, g, &cnt);
            n += cnt;
        }
    if (n < 2) return 0;
    float *X = malloc((size_t)n * d * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof *y);
    if (!X || !y) {
        free(X), free(y);
        return xd_err("debias: out of memory refitting the adversary");
    }
    int at = 0;
    for (int c = 0; c < r->n_classes; c++)
        for (int g = 0; g < r->n_groups; g++) {
            const float *rows = bank_rows(r, c, g, &cnt);
            memcpy(X + (size_t)at * d, rows, (size_t)cnt * d * sizeof(float));
            for (int i = 0; i < cnt; i++) y[at + i] = g;
            at += cnt;
        }
    xd_attack_opts ao;
    xd_attack_defaults(&ao);
    ao.heads = r->n_adv;
    ao.epochs = 10;
    ao.lr = 1e-3f;
    ao.dropout = r->adv[0].dropout;
    ao.seed = xd_mix64(r->o.seed ^ (uint64_t)step);
    size_t np = (size_t)xd_head_n_params(r->adv_in, d, r->n_attr_classes, 1) * (size_t)r->n_adv;
    int rc = xd_attack_fit(r->adv, r->n_adv, r->adv[0].W[0], np, X, y, n, d, r->n_attr_classes, &ao);
    free(X), free(y);
    return rc;
}

static int ob_begin(xd_objective *ob, xd_trainer_model *tm, int64_t step) {
    (void)tm;
    run *r = ob->ctx;
    r->task_sum = r->adv_sum = r->conf_sum = r->mmd_sum = r->pair_sum = 0;
    r->n_seen = 0;
    int reset = r->o.adv_reset > 0 && step > 1 && (step - 1) % r->o.adv_reset == 0;
    int refit = r->o.adv_refit > 0 && step > 1 && (step - 1) % r->o.adv_refit == 0;
    if (reset || refit)
        for (int k = 0; k < r->n_adv; k++) /* a fresh attacker: new weights, same place */
            xd_head_init(&r->adv[k], xd_mix64(r->o.seed ^ xd_mix64((uint64_t)step * 0x9e3779b97f4a7c15ull +
                                                                  (uint64_t)k)));
    if (refit && adv_refit(r, step)) return -1;
    materialize(r, step, 1);
    return 0;
}

/* dL/dθ (the model's gradient arena, which this overwrites) onto w and log α; then the L0
 * term. */
static int ob_end(xd_objective *ob, xd_trainer_model *tm, int64_t step, double *loss) {
    (void)step;
    run *r = ob->ctx;
    for (int t = 0; t < r->nt; t++) {
        size_t n = (size_t)(r->tw[t].rows * r->tw[t].cols);
        float *g = tm->grad_arena + r->toff[t];
        const float *w = r->w + r->woff[t];
        float *dw = r->dw + r->woff[t];
        if (r->phase == PH_FULL) {
            memcpy(dw, g, n * sizeof(float));
        } else if (r->phase == PH_FIXMASK) {
            const uint8_t *k = r->keep + r->woff[t];
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
            for (size_t i = 0; i < n; i++) dw[i] = k[i] ? g[i] : 0.0f;
        } else {
            /* θ = θ₀ + z ⊙ w: dw = dθ ⊙ z, dz = dθ ⊙ w (into g), then through the sample to
             * log α */
            const float *z = r->z + r->woff[t], *s = r->s + r->woff[t];
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
            for (size_t i = 0; i < n; i++) {
                dw[i] = g[i] * z[i];
                g[i] *= w[i];
            }
            xd_hc_sample_backward(r->dlog_alpha + r->woff[t], g, s, (int64_t)n, r->o.stretch_l,
                                  r->o.stretch_r);
        }
    }
    if (r->phase == PH_MASK) {
        r->l0 = xd_hc_expected_l0(r->log_alpha, (int64_t)r->n_w, r->o.stretch_l, r->o.stretch_r,
                                  r->dlog_alpha, r->o.l0_weight);
        *loss += r->o.l0_weight * r->l0;
    }
    return 0;
}

/* ---- batches and the classification loss --------------------------------------------- */

static int64_t ob_count(xd_objective *ob, const xd_batch *bb, int B, int T) {
    (void)bb, (void)B, (void)T;
    return ((run *)ob->ctx)->n_ex;
}

/* n_ex examples, then with pairs their counterfactuals in the same order */
static int ob_batch(xd_objective *ob, uint64_t *cursor, int B, int T, xd_batch *bb) {
    (void)B;
    run *r = ob->ctx;
    int n = r->n_ex;
    r->batch_cursor = *cursor;
    for (int b = 0; b < n; b++)
        r->ex[b] = xd_clf_draw(r->train, r->o.seed, *cursor + (uint64_t)b, r->perm, &r->perm_epoch);
    xd_clf_fill(r->train, r->ex, n, T, bb->tok, bb->pos, bb->ds, r->len);
    if (r->pairs) {
        size_t o = (size_t)n * T;
        memcpy(r->ex + n, r->ex, (size_t)n * sizeof *r->ex);
        xd_clf_fill(r->train->pair, r->ex, n, T, bb->tok + o, bb->pos + o, bb->ds + o, r->len + n);
    }
    *cursor += (uint64_t)n;
    return 0;
}

/* The confusion term (Alvi et al. 2018, "Turning a Blind Eye"; Tzeng et al. 2015): the
 * cross-entropy of each row's softmax to the uniform distribution over C classes,
 *   loss = −(1/C)·Σ_c log p_c = logsumexp(x) − mean(x),   d loss / dx = p − 1/C,
 * summed over the rows with a target (targets < 0 are padding: loss and dlogits 0);
 * dlogits = scale · d loss / dx. Its minimum, log C, is reached when the head cannot tell
 * the classes apart, whereas reversing the head's own cross-entropy also rewards a
 * representation that makes it confidently wrong, which still carries the attribute. */
static double confusion(float *dlogits, const float *logits, const int32_t *targets, int n, int C,
                        float scale) {
    double sum = 0;
    for (int b = 0; b < n; b++) {
        const float *x = logits + (size_t)b * C;
        float *g = dlogits + (size_t)b * C;
        if (targets[b] < 0) {
            memset(g, 0, (size_t)C * sizeof(float));
            continue;
        }
        double mx = x[0], z = 0, mean = 0;
        for (int c = 1; c < C; c++) mx = x[c] > mx ? x[c] : mx;
        for (int c = 0; c < C; c++) z += exp(x[c] - mx), mean += x[c];
        sum += mx + log(z) - mean / C;
        for (int c = 0; c < C; c++) g[c] = (float)(scale * (exp(x[c] - mx) / z - 1.0 / C));
    }
    return sum;
}

/* Forward over the rows in bb of examples r->ex from data (n real rows of B): the task
 * and adversary losses (sums over the rows, the adversary's averaged over its heads; with
 * adv_confusion also the confusion term, likewise), and with backward the gradients of
 * grad_scale · (task − λ·adversary through the reversal, or task + λ·confusion; the heads
 * minimise their cross-entropy) into the heads and the model. */
/* The bank's rows of class c, group g: their start and count. */
static float *bank_rows(const run *r, int c, int g, int *count) {
    size_t cg = (size_t)c * r->n_groups + g;
    *count = (int)r->bank_fill[2 * cg];
    return r->bank + cg * r->mmd_k * r->m->cfg.d_model;
}

/* Gathers the filled bank rows of class c into r->mmd_rows: group g's first (*n_same of
 * them), then the other groups' in group order (*n_other). */
static void gather_class(const run *r, int c, int g, int *n_same, int *n_other) {
    int d = r->m->cfg.d_model, n;
    const float *rows = bank_rows(r, c, g, n_same);
    memcpy(r->mmd_rows, rows, (size_t)*n_same * d * sizeof(float));
    *n_other = 0;
    for (int h = 0; h < r->n_groups; h++) {
        if (h == g) continue;
        rows = bank_rows(r, c, h, &n);
        memcpy(r->mmd_rows + (size_t)(*n_same + *n_other) * d, rows, (size_t)n * d * sizeof(float));
        *n_other += n;
    }
}

/* The MMD term of the rows with a label and a group (kernels/mmd.h): Σ_b loss(pooled_b)
 * against the bank of b's class; with dpooled, adds grad_scale · mmd_weight · its gradient.
 * Kernels: γ = {1/4, 1, 4} / (mean squared distance between the class's bank rows), or
 * linear with weights 1 / (variance + 1e-6 · mean variance) per dimension over them. */
static double mmd_rows(run *r, float *dpooled, int n, float grad_scale) {
    int d = r->m->cfg.d_model;
    double sum = 0;
    for (int b = 0; b < n; b++) {
        int c = r->lab[b], g = r->att[b], n_same, n_other;
        if (c < 0 || g < 0) continue;
        gather_class(r, c, g, &n_same, &n_other);
        if (n_same < 2 || n_other < 2) continue; /* too few rows yet to compare */
        /* the bandwidths (or variances) from all of the class's rows */
        const float *same = r->mmd_rows, *other = r->mmd_rows + (size_t)n_same * d;
        float *db = dpooled ? dpooled + (size_t)b * d : NULL;
        if (r->o.mmd_linear) {
            int nt = n_same + n_other;
            double vsum = 0;
            for (int i = 0; i < d; i++) {
                double m = 0, v = 0;
                for (int j = 0; j < nt; j++) m += same[(size_t)j * d + i];
                m /= nt;
                for (int j = 0; j < nt; j++) {
                    double t = same[(size_t)j * d + i] - m;
                    v += t * t;
                }
                r->mmd_w[i] = (float)(v / (nt - 1));
                vsum += v / (nt - 1);
            }
            double floor = 1e-6 * vsum / d;
            for (int i = 0; i < d; i++) r->mmd_w[i] = (float)(1.0 / ((double)r->mmd_w[i] + floor));
            sum += xd_mmd_bank_linear(db, r->pooled + (size_t)b * d, d, same, n_same, other,
                                      n_other, r->mmd_w, grad_scale * r->o.mmd_weight);
            continue;
        }
        double msd = xd_mean_sq_dist(same, n_same + n_other, d);
        if (!(msd > 0)) continue;
        float gamma[3] = {(float)(0.25 / msd), (float)(1.0 / msd), (float)(4.0 / msd)};
        sum += xd_mmd_bank(db, r->pooled + (size_t)b * d, d, same, n_same, other, n_other,
                           gamma, 3, grad_scale * r->o.mmd_weight);
    }
    return sum;
}

/* After a training micro-batch: its rows join the bank (a ring per class and group). */
static void bank_push(run *r, int n) {
    int d = r->m->cfg.d_model;
    for (int b = 0; b < n; b++) {
        int c = r->lab[b], g = r->att[b];
        if (c < 0 || g < 0) continue;
        size_t cg = (size_t)c * r->n_groups + g;
        float *fill = r->bank_fill + 2 * cg;
        int slot = (int)fill[1];
        memcpy(r->bank + (cg * r->mmd_k + (size_t)slot) * d, r->pooled + (size_t)b * d,
               (size_t)d * sizeof(float));
        if (fill[0] < (float)r->mmd_k) fill[0] += 1.0f;
        fill[1] = (float)((slot + 1) % r->mmd_k);
    }
}

/* A loss over the examples of a batch, B examples of `per` rows each (logits [B·per][C],
 * targets −1 on rows without one): the cross-entropy, or with conf the confusion term. An
 * example's term is the sum over its rows, or with len (per = T, token rows) their mean over
 * its len[b] real rows, so each example weighs the same whatever its length; with rw it is
 * multiplied by the example's weight rw[b]. dlogits are scaled alike. */
static double rows_term(int conf, float *dlogits, const float *logits, const int32_t *targets,
                        int B, int per, const int32_t *len, int C, float scale, const float *rw) {
    if (per == 1 && !rw)
        return conf ? confusion(dlogits, logits, targets, B, C, scale)
                    : xd_cross_entropy(dlogits, logits, targets, B, C, scale);
    double sum = 0;
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * per * C;
        const int32_t *tg = targets + (size_t)b * per;
        float wb = rw ? rw[b] : 1.0f, k = len ? (float)len[b] : 1.0f;
        double v = conf ? confusion(dlogits + o, logits + o, tg, per, C, scale * wb / k)
                        : xd_cross_entropy(dlogits + o, logits + o, tg, per, C, scale * wb / k);
        sum += wb * v / k;
    }
    return sum;
}

/* The heads' hits on the first n examples: per example 1 or 0, or with adv_tokens the share
 * of its tokens whose row they read right. */
static double adv_hits(const run *r, const float *logits, const int32_t *att, int n) {
    int C = r->n_attr_classes;
    double hits = 0;
    for (int b = 0; b < n; b++) {
        if (!r->o.adv_tokens) {
            hits += xd_head_argmax(logits + (size_t)b * C, C) == att[b];
            continue;
        }
        int ok = 0;
        for (int t = 0; t < r->len[b]; t++)
            ok += xd_head_argmax(logits + ((size_t)b * r->T + t) * C, C) == att[b];
        hits += (double)ok / r->len[b];
    }
    return hits;
}

/* The r->B rows of a batch: rows below n are examples of data with their losses; with
 * pairs (training), rows pairs .. 2·pairs − 1 are the counterfactuals of rows 0 .. pairs − 1
 * and add the invariance term only. */
static int forward_rows(run *r, xd_trainer_model *tm, const xd_clf_data *data, const int32_t *tok,
                        const int32_t *pos, const int32_t *ds, int n, int pairs, int backward,
                        float grad_scale, double *task, double *adv, double *conf, double *mmd,
                        double *pair, int64_t *task_ok, double *adv_ok) {
    int B = r->B, T = r->T, d = r->m->cfg.d_model;
    double s;
    int64_t c;
    if (xd_tm_step(tm, tok, NULL, pos, ds, 0, 0.0f, &s, &c)) return -1;
    if (xd_pool_forward(r->pooled, tm->x_norm, r->len, B, T, d, r->o.pool)) return -1;
    int32_t *lab = r->lab, *att = r->att;
    for (int b = 0; b < B; b++) {
        lab[b] = b < n ? data->lab->label.id[r->ex[b]] : -1;
        att[b] = b < n && r->adv_col >= 0 ? data->lab->attr[r->adv_col].id[r->ex[b]] : -1;
    }
    /* --balance: the training rows weighted so that label and attribute are independent */
    const float *rw = NULL;
    if (r->bal && data == r->train) {
        for (int b = 0; b < B; b++)
            r->row_w[b] = lab[b] >= 0 && att[b] >= 0 ? r->bal[lab[b] * r->n_attr_classes + att[b]] : 0.0f;
        rw = r->row_w;
    }
    uint64_t dseed = xd_mix64(r->o.seed ^ xd_mix64(r->batch_cursor + 0x9e37ull));
    float *lg = (float *)xd_head_forward(&r->head, &r->ha, r->pooled, B, backward, dseed);
    if (task_ok)
        for (int b = 0; b < n; b++)
            *task_ok += xd_head_argmax(lg + (size_t)b * r->n_classes, r->n_classes) == lab[b];
    *task += rows_term(0, lg, lg, lab, B, 1, NULL, r->n_classes, grad_scale, rw);
    if (backward) {
        memset(r->dpooled, 0, (size_t)B * d * sizeof(float));
        xd_head_backward(&r->head, &r->ha, lg, r->dpooled, B);
        memset(r->dadv, 0, (size_t)B * d * sizeof(float));
    }
    /* a conditional adversary reads [pooled ‖ one-hot(label)]; its dx is folded back below */
    const float *ain = r->pooled;
    float *dain = r->dadv;
    const int32_t *aatt = att;
    int arows = B;
    if (r->o.adv_tokens) { /* every real token's final-norm output, labelled with its example's */
        arows = B * T;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) r->att_tok[b * T + t] = t < r->len[b] ? att[b] : -1;
        aatt = r->att_tok;
        ain = tm->x_norm;
        dain = r->dadv_tok;
        if (backward) memset(r->dadv_tok, 0, (size_t)B * T * d * sizeof(float));
    } else if (r->adv_in > d) {
        int K = r->adv_in - d;
        for (int b = 0; b < B; b++) {
            float *x = r->advx + (size_t)b * r->adv_in;
            memcpy(x, r->pooled + (size_t)b * d, (size_t)d * sizeof(float));
            memset(x + d, 0, (size_t)K * sizeof(float));
            if (lab[b] >= 0) x[d + lab[b]] = 1.0f;
        }
        ain = r->advx;
        dain = r->dadvx;
        if (backward) memset(r->dadvx, 0, (size_t)B * r->adv_in * sizeof(float));
    }
    for (int k = 0; k < r->n_adv; k++) {
        float *al = (float *)xd_head_forward(&r->adv[k], &r->aa[k], ain, arows, backward,
                                             xd_mix64(dseed + 1 + (uint64_t)k));
        if (adv_ok) *adv_ok += adv_hits(r, al, att, n);
        int per = r->o.adv_tokens ? T : 1;
        const int32_t *alen = r->o.adv_tokens ? r->len : NULL;
        if (r->o.adv_confusion) /* before the cross-entropy overwrites the logits */
            *conf += rows_term(1, r->dconf, al, aatt, B, per, alen, r->n_attr_classes,
                               grad_scale / r->n_adv, rw) / r->n_adv;
        *adv += rows_term(0, al, al, aatt, B, per, alen, r->n_attr_classes, grad_scale / r->n_adv,
                          rw) / r->n_adv;
        if (!backward) continue;
        if (!r->o.adv_confusion) {
            xd_head_backward(&r->adv[k], &r->aa[k], al, dain, arows);
            continue;
        }
        /* the heads learn the attribute; the encoder gets the confusion term's dx through
         * the same heads, frozen for it */
        xd_head_backward(&r->adv[k], &r->aa[k], al, NULL, arows);
        xd_head frozen = r->adv[k];
        for (int l = 0; l < XD_HEAD_MAX_LAYERS; l++) frozen.dW[l] = frozen.db[l] = NULL;
        xd_head_backward(&frozen, &r->aa[k], r->dconf, dain, arows);
    }
    if (r->mmd_k && r->o.mmd_weight > 0) *mmd += mmd_rows(r, backward ? r->dpooled : NULL, n, grad_scale);
    if (pairs) {
        size_t o = (size_t)pairs * d;
        *pair += xd_pair_sq(backward ? r->dpooled : NULL, backward ? r->dpooled + o : NULL,
                            r->pooled, r->pooled + o, pairs, d, grad_scale * r->o.pair_weight);
    }
    if (!backward) return 0;
    if (r->adv_in > d && !r->o.adv_tokens) /* the pooled part of the conditional input's gradient */
        for (int b = 0; b < B; b++)
            memcpy(r->dadv + (size_t)b * d, r->dadvx + (size_t)b * r->adv_in,
                   (size_t)d * sizeof(float));
    /* gradient reversal (Ganin & Lempitsky 2015): the encoder gets −λ · the heads' dx; the
     * confusion term is minimised, not reversed: +λ · its dx */
    float lambda = r->o.adv_confusion ? -r->o.adv_lambda : r->o.adv_lambda;
    if (r->n_adv && !r->o.adv_tokens)
        xd_grad_reverse_backward(r->dpooled, r->dadv, (int64_t)B * d, lambda);
    memset(r->dnorm, 0, (size_t)B * T * d * sizeof(float));
    xd_pool_backward(r->dnorm, r->dpooled, r->len, B, T, d, r->o.pool);
    if (r->n_adv && r->o.adv_tokens) /* the token rows' dx straight onto the norm's output */
        xd_grad_reverse_backward(r->dnorm, r->dadv_tok, (int64_t)B * T * d, lambda);
    return xd_tm_backward_hidden(tm, tok, r->dnorm);
}

static int ob_step(xd_objective *ob, xd_trainer_model *tm, const xd_batch *bb, uint64_t row0,
                   int backward, float grad_scale, double *loss_sum) {
    (void)row0;
    run *r = ob->ctx;
    double task = 0, adv = 0, conf = 0, mmd = 0;
    double pair = 0;
    if (forward_rows(r, tm, r->train, bb->tok, bb->pos, bb->ds, r->n_ex, r->pairs, backward,
                     grad_scale, &task, &adv, &conf, &mmd, &pair, NULL, NULL))
        return -1;
    if (backward && r->mmd_k) bank_push(r, r->n_ex);
    r->task_sum += task;
    r->adv_sum += adv;
    r->conf_sum += conf;
    r->mmd_sum += mmd;
    r->pair_sum += pair;
    r->n_seen += r->n_ex;
    *loss_sum = task;
    return 0;
}

/* Validation on the eval-time weights: the task's mean CE, its accuracy and the
 * adversary's accuracy (mean over its heads). */
static int ob_eval(xd_objective *ob, xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *loss, char *json, size_t cap) {
    (void)data, (void)max_windows;
    run *r = ob->ctx;
    materialize(r, 0, 0);
    const xd_clf_data *v = r->val;
    int B = r->B, T = r->T;
    size_t BT = (size_t)B * T;
    int32_t *tok = malloc(BT * sizeof(int32_t)), *pos = malloc(BT * sizeof(int32_t)),
            *ds = malloc(BT * sizeof(int32_t));
    double task = 0, adv = 0, conf = 0, mmd = 0, pair = 0;
    int64_t ok = 0;
    double adv_ok = 0;
    int rc = -1;
    if (!tok || !pos || !ds) { xd_err("out of memory"); goto done; }
    for (int64_t e0 = 0; e0 < v->n; e0 += B) {
        int n = v->n - e0 < B ? (int)(v->n - e0) : B;
        for (int b = 0; b < B; b++) r->ex[b] = b < n ? e0 + b : e0;
        xd_clf_fill(v, r->ex, B, T, tok, pos, ds, r->len);
        if (forward_rows(r, tm, v, tok, pos, ds, n, 0, 0, 1.0f, &task, &adv, &conf, &mmd, &pair,
                         &ok, &adv_ok))
            goto done;
    }
    *loss = task / (double)v->n;
    int k = snprintf(json, cap, ",\"val_acc\":%.6f", (double)ok / (double)v->n);
    if (r->n_adv && k > 0 && (size_t)k < cap)
        k += snprintf(json + k, cap - (size_t)k, ",\"val_adv_loss\":%.6g,\"val_adv_acc\":%.6f",
                      adv / (double)v->n, adv_ok / (double)(v->n * r->n_adv));
    if (r->mmd_k && r->o.mmd_weight > 0 && k > 0 && (size_t)k < cap)
        k += snprintf(json + k, cap - (size_t)k, ",\"val_mmd\":%.6g", mmd / (double)v->n);
    if (r->phase == PH_MASK && k > 0 && (size_t)k < cap) {
        int64_t nz = 0;
        for (size_t i = 0; i < r->n_w; i++) nz += r->z[i] != 0.0f;
        snprintf(json + k, cap - (size_t)k, ",\"nonzero_share\":%.6g", (double)nz / (double)r->n_w);
    }
    rc = 0;
done:
    free(tok), free(pos), free(ds);
    return rc;
}

static void ob_log(xd_objective *ob, char *json, size_t cap) {
    run *r = ob->ctx;
    int k = snprintf(json, cap, ",\"task_loss\":%.6g",
                     r->n_seen ? r->task_sum / (double)r->n_seen : 0.0);
    if (r->n_adv && k > 0 && (size_t)k < cap)
        k += snprintf(json + k, cap - (size_t)k, ",\"adv_loss\":%.6g",
                      r->n_seen ? r->adv_sum / (double)r->n_seen : 0.0);
    if (r->mmd_k && r->o.mmd_weight > 0 && k > 0 && (size_t)k < cap)
        k += snprintf(json + k, cap - (size_t)k, ",\"mmd\":%.6g",
                      r->n_seen ? r->mmd_sum / (double)r->n_seen : 0.0);
    if (r->pairs && k > 0 && (size_t)k < cap)
        k += snprintf(json + k, cap - (size_t)k, ",\"pair_sq\":%.6g",
                      r->n_seen ? r->pair_sum / (double)r->n_seen : 0.0);
    if (r->phase == PH_MASK && k > 0 && (size_t)k < cap)
        snprintf(json + k, cap - (size_t)k, ",\"expected_l0_share\":%.6g", r->l0 / (double)r->n_w);
}

/* The mask phase's result (the cut starts from it; it marks the phase done). The other
 * phases' results are the files xd_debias_train writes after them. */
static int ob_save(xd_objective *ob, const char *out_dir) {
    run *r = ob->ctx;
    if (r->phase != PH_MASK) return 0;
    char p[XD_APATH_MAX + 64];
    snprintf(p, sizeof p, "%s/params.safetensors", out_dir);
    return xd_params_save(p, &r->own);
}

/* ---- one phase's objective -------------------------------------------------------------- */

static void run_free(run *r) {
    if (!r) return;
    free(r->tw), free(r->toff), free(r->woff);
    free(r->own.w), free(r->own.train), free(r->own.decay), free(r->own.lr_scale);
    free(r->own.param), free(r->own.grad);
    free(r->z), free(r->s), free(r->keep), free(r->perm);
    free(r->ex), free(r->len), free(r->lab), free(r->att);
    free(r->pooled), free(r->dpooled), free(r->dadv), free(r->dnorm), free(r->dconf);
    free(r->att_tok), free(r->dadv_tok), free(r->bal), free(r->row_w);
    free(r->advx), free(r->dadvx), free(r->mmd_rows), free(r->mmd_w);
    xd_head_acts_free(&r->ha);
    for (int k = 0; k < r->n_adv; k++) xd_head_acts_free(&r->aa[k]);
    memset(r, 0, sizeof *r);
}

/* Appends tensor i of the own groups: name, pointer, shape, learning-rate scale. */
static void own_add(run *r, const char *name, float *ptr, int64_t rows, int64_t cols, int ndim,
                    float lr_scale, int decay) {
    xd_param_groups *g = &r->own;
    xd_weight *w = &g->w[g->n];
    memset(w, 0, sizeof *w);
    size_t l = strlen(name);
    if (l >= sizeof w->hf) l = sizeof w->hf - 1; /* run_init refuses names that long */
    memcpy(w->hf, name, l);
    w->hf[l] = 0;
    w->ptr = ptr;
    w->rows = rows;
    w->cols = cols;
    w->ndim = ndim;
    g->train[g->n] = 1;
    g->decay[g->n] = (unsigned char)decay;
    g->lr_scale[g->n] = lr_scale;
    g->n++;
}

/* A tensor of the own arena that is state, not a parameter: saved with checkpoints, never
 * updated by the optimiser. */
static void own_add_state(run *r, const char *name, float *ptr, int64_t rows, int64_t cols) {
    own_add(r, name, ptr, rows, cols, 2, 0.0f, 0);
    r->own.train[r->own.n - 1] = 0;
}

static void own_add_head(run *r, const xd_head *h, const char *prefix, float lr_scale) {
    for (int i = 0; i < 2 * (h->n_hidden + 1); i++) {
        char name[64];
        float *p;
        int64_t rows, cols;
        int nd;
        xd_head_tensor(h, i, prefix, name, sizeof name, &p, &rows, &cols, &nd);
        own_add(r, name, p, rows, cols, nd, lr_scale, nd == 2);
    }
}

/* frozen_head: the task head's parameters when it does not train (attribute runs). */
static int run_init(run *r, xd_model *m, const float *theta0, int phase, const xd_debias_opts *o,
                    const xd_clf_data *train, const xd_clf_data *val, float *frozen_head,
                    const xd_train_opts *to) {
    int pairs = train->pair && o->pair_weight > 0 ? to->batch : 0, B = to->batch + pairs,
        T = to->seq;
    float lr = to->lr;
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->n_ex = to->batch;
    r->pairs = pairs;
    if (o->pair_weight > 0 && !train->pair)
        return xd_err("%s: the counterfactual invariance term needs each record's "
                      "counterfactual text (--cf-field or --cf-swap)", train->lab->path);
    if (train->pair && train->pair->n != train->n)
        return xd_err("%s: %lld counterfactual texts for %lld examples", train->lab->path,
                      (long long)train->pair->n, (long long)train->n);
    if (phase == PH_FIXMASK && o->adv_lambda_fixed >= 0) r->o.adv_lambda = o->adv_lambda_fixed;
    r->phase = phase;
    r->m = m;
    r->theta0 = theta0;
    r->train = train;
    r->val = val;
    r->B = B;
    r->T = T;
    r->perm_epoch = -1;
    r->n_classes = train->lab->label.n_classes;
    int d = m->cfg.d_model;
    r->adv_col = -1;
    if (o->adv_attr) {
        for (int a = 0; a < train->lab->n_attr; a++)
            if (!strcmp(train->lab->attr[a].field, o->adv_attr)) r->adv_col = a;
        if (r->adv_col < 0)
            return xd_err("%s: the adversary's attribute field \"%s\" is not one of the data's "
                          "attribute fields (--attr)", train->lab->path, o->adv_attr);
        r->n_adv = o->adv_heads;
        r->n_attr_classes = train->lab->attr[r->adv_col].n_classes;
        if (o->adv_tokens && (o->adv_conditional || o->adv_refit > 0 || o->adv_heads < 1))
            return xd_err("--adv-tokens: needs adversary heads (--adv-heads ≥ 1) and works "
                          "without --adv-conditional and --adv-refit, which read pooled rows");
        if (o->adv_refit > 0 && (o->adv_conditional || o->adv_heads < 1))
            return xd_err("--adv-refit %d: needs adversary heads (--adv-heads ≥ 1) reading the "
                          "representation alone (not --adv-conditional)", o->adv_refit);
        if (o->balance) {
            r->bal = malloc((size_t)r->n_classes * r->n_attr_classes * sizeof(float));
            r->row_w = malloc((size_t)B * sizeof(float));
            if (!r->bal || !r->row_w) return xd_err("debias: out of memory");
            if (xd_balance_weights(train->lab->label.id, train->lab->attr[r->adv_col].id, train->n,
                                   r->n_classes, r->n_attr_classes, r->bal))
                return -1;
        }
        if (o->mmd_weight > 0 || o->adv_refit > 0) { /* the bank */
            if (o->mmd_bank < 2) return xd_err("--mmd-bank %d: expected at least 2", o->mmd_bank);
            r->mmd_k = o->mmd_bank;
            r->n_groups = r->n_attr_classes;
        }
    }
    if (o->balance && r->adv_col < 0)
        return xd_err("--balance: needs the attribute to balance against (--protect, or --adv "
                      "in a task run)");
    xd_weight *all;
    int n_all;
    if (xd_model_weights(m, &all, &n_all)) return -1;
    r->tw = malloc((size_t)n_all * sizeof *r->tw);
    r->toff = malloc((size_t)n_all * sizeof *r->toff);
    r->woff = malloc((size_t)n_all * sizeof *r->woff);
    if (!r->tw || !r->toff || !r->woff) { free(all); return xd_err("out of memory"); }
    for (int i = 0; i < n_all; i++) {
        /* the language-model head reads nothing here, and --freeze names: no diff */
        int frozen_w = !strncmp(all[i].hf, "lm_head", 7);
        for (int f = 0; f < to->n_freeze; f++) frozen_w |= strstr(all[i].hf, to->freeze[f]) != NULL;
        if (frozen_w) continue;
        if (strlen(all[i].hf) + 11 > sizeof all[i].hf - 1) {
            xd_err("debias: weight name '%s' is too long for a diff tensor name", all[i].hf);
            free(all);
            return -1;
        }
        r->tw[r->nt] = all[i];
        r->toff[r->nt] = (size_t)(all[i].ptr - m->arena);
        r->woff[r->nt] = r->n_w;
        r->n_w += (size_t)(all[i].rows * all[i].cols);
        r->nt++;
    }
    free(all);
    r->head_trains = frozen_head == NULL;
    int64_t n_head = xd_head_n_params(d, d, r->n_classes, 0);
    r->adv_in = d + (o->adv_conditional ? r->n_classes : 0);
    int64_t n_adv1 = r->n_adv ? xd_head_n_params(r->adv_in, d, r->n_attr_classes, 1) : 0;
    size_t n_cg = (size_t)r->n_classes * (size_t)r->n_groups;
    size_t n_bank = n_cg * (size_t)r->mmd_k * (size_t)d;
    size_t nf = r->n_w * (phase == PH_MASK ? 2 : 1) + (size_t)(r->head_trains ? n_head : 0) +
                (size_t)(r->n_adv * n_adv1) + (r->mmd_k ? n_bank + 2 * n_cg : 0);
    int n_t = r->nt * (phase == PH_MASK ? 2 : 1) + 2 + 4 * r->n_adv + 2;
    xd_param_groups *g = &r->own;
    g->w = calloc((size_t)n_t, sizeof *g->w);
    g->train = calloc((size_t)n_t, 1);
    g->decay = calloc((size_t)n_t, 1);
    g->lr_scale = calloc((size_t)n_t, sizeof *g->lr_scale);
    g->param = calloc(nf, sizeof(float));
    g->grad = calloc(nf, sizeof(float));
    g->n_floats = nf;
    r->perm = malloc((size_t)train->n * sizeof *r->perm);
    r->ex = malloc((size_t)B * sizeof *r->ex);
    r->len = malloc((size_t)B * sizeof *r->len);
    r->lab = malloc((size_t)B * sizeof *r->lab);
    r->att = malloc((size_t)B * sizeof *r->att);
    r->pooled = malloc((size_t)B * d * sizeof(float));
    r->dpooled = malloc((size_t)B * d * sizeof(float));
    r->dadv = malloc((size_t)B * d * sizeof(float));
    r->advx = malloc((size_t)B * r->adv_in * sizeof(float));
    r->dadvx = malloc((size_t)B * r->adv_in * sizeof(float));
    int arows = o->adv_tokens ? B * T : B; /* the adversary heads' rows per batch */
    r->dconf = malloc((size_t)arows * (size_t)(r->n_attr_classes > 0 ? r->n_attr_classes : 1) *
                      sizeof(float));
    if (o->adv_tokens) {
        r->att_tok = malloc((size_t)B * T * sizeof *r->att_tok);
        r->dadv_tok = malloc((size_t)B * T * d * sizeof(float));
        if (!r->att_tok || !r->dadv_tok) return xd_err("debias: out of memory for the token rows");
    }
    r->dnorm = malloc((size_t)B * T * d * sizeof(float));
    if (r->mmd_k) {
        r->mmd_rows = malloc((size_t)r->n_groups * r->mmd_k * d * sizeof(float));
        r->mmd_w = malloc((size_t)d * sizeof(float));
        if (!r->mmd_rows || !r->mmd_w)
            return xd_err("debias: out of memory for the MMD bank");
    }
    if (phase == PH_MASK) {
        r->z = malloc(r->n_w * sizeof(float));
        r->s = malloc(r->n_w * sizeof(float));
    }
    if (phase == PH_FIXMASK) r->keep = calloc(r->n_w, 1);
    if (!g->w || !g->train || !g->decay || !g->lr_scale || !g->param || !g->grad ||
        !r->perm || !r->ex || !r->len || !r->lab || !r->att || !r->pooled || !r->dpooled ||
        !r->dadv || !r->advx || !r->dadvx || !r->dconf || !r->dnorm || (phase == PH_MASK && (!r->z || !r->s)) ||
        (phase == PH_FIXMASK && !r->keep))
        return xd_err("debias: out of memory for a diff of %zu weights", r->n_w);
    /* own arena: w | log α (first phase) | task head (when it trains) | adversaries */
    size_t off = 0;
    r->w = g->param;
    r->dw = g->grad;
    off += r->n_w;
    if (phase == PH_MASK) {
        r->log_alpha = g->param + off;
        r->dlog_alpha = g->grad + off;
        for (size_t i = 0; i < r->n_w; i++) r->log_alpha[i] = o->log_alpha_init;
        off += r->n_w;
    }
    char name[112];
    for (int t = 0; t < r->nt; t++) {
        const xd_weight *tw = &r->tw[t];
        snprintf(name, sizeof name, "diff.%s", tw->hf);
        own_add(r, name, r->w + r->woff[t], tw->rows, tw->cols, tw->ndim, 1.0f, tw->ndim == 2);
    }
    if (phase == PH_MASK)
        for (int t = 0; t < r->nt; t++) {
            const xd_weight *tw = &r->tw[t];
            snprintf(name, sizeof name, "log_alpha.%s", tw->hf);
            own_add(r, name, r->log_alpha + r->woff[t], tw->rows, tw->cols, tw->ndim,
                    o->lr_alpha / lr, 0);
        }
    if (xd_head_layout(&r->head, d, d, r->n_classes, 0, o->head_dropout,
                       r->head_trains ? g->param + off : frozen_head,
                       r->head_trains ? g->grad + off : NULL))
        return -1;
    if (r->head_trains) {
        xd_head_init(&r->head, xd_mix64(o->seed ^ 0x4845414400000000ull));
        own_add_head(r, &r->head, "head", o->lr_head / lr);
        off += (size_t)n_head;
    }
    if (xd_head_acts_alloc(&r->ha, &r->head, B)) return -1;
    for (int k = 0; k < r->n_adv; k++) {
        if (xd_head_layout(&r->adv[k], r->adv_in, d, r->n_attr_classes, 1, o->adv_dropout, g->param + off,
                           g->grad + off) ||
            xd_head_acts_alloc(&r->aa[k], &r->adv[k], arows))
            return -1;
        xd_head_init(&r->adv[k], xd_mix64(o->seed ^ (0x4144560000000000ull + (uint64_t)k)));
        snprintf(name, sizeof name, "adversary.%d", k);
        own_add_head(r, &r->adv[k], name, o->lr_adv / lr);
        off += (size_t)n_adv1;
    }
    if (r->mmd_k) { /* last: prune_into copies it with the heads */
        r->bank = g->param + off;
        own_add_state(r, "mmd.bank", r->bank, (int64_t)(n_cg * (size_t)r->mmd_k), d);
        off += n_bank;
        r->bank_fill = g->param + off;
        own_add_state(r, "mmd.bank_fill", r->bank_fill, (int64_t)n_cg, 2);
        off += 2 * n_cg;
    }
    r->ob = (xd_objective){.ctx = r, .count = ob_count, .step = ob_step, .eval = ob_eval,
                           .log_extra = ob_log, .batch = ob_batch, .params = &r->own,
                           .begin_step = ob_begin, .end_step = ob_end, .save = ob_save};
    return 0;
}

xd_debias_run *xd_debias_run_new(xd_model *m, const float *theta0, int phase,
                                 const xd_debias_opts *o, const xd_clf_data *train,
                                 const xd_clf_data *val, float *frozen_head,
                                 const xd_train_opts *to) {
    run *r = malloc(sizeof *r);
    if (!r) return xd_err("out of memory"), NULL;
    if (run_init(r, m, theta0, phase, o, train, val, frozen_head, to)) {
        run_free(r);
        free(r);
        return NULL;
    }
    return r;
}

void xd_debias_run_free(xd_debias_run *r) {
    run_free(r);
    free(r);
}

xd_objective *xd_debias_objective(xd_debias_run *r) { return &r->ob; }

void xd_debias_losses(const xd_debias_run *r, double *task, double *adv, double *conf, double *mmd,
                      double *pair, double *l0) {
    *task = r->task_sum;
    *pair = r->pair_sum;
    *adv = r->adv_sum;
    *conf = r->conf_sum;
    *mmd = r->mmd_sum;
    *l0 = r->l0;
}

/* ---- the phases and the results --------------------------------------------------------- */

static int run_phase(run *r, xd_model *m, const xd_train_opts *o, const char *out_dir,
                     const char *sub, int64_t steps) {
    char dir[XD_APATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, sub);
    xd_train_opts p = *o;
    p.out_dir = dir;
    p.steps = steps;
    p.batch = r->B; /* with pairs: the examples and their counterfactuals */
    p.objective = &r->ob;
    p.lora = NULL;
    p.lora_pissa0 = NULL;
    char kind[64];
    snprintf(kind, sizeof kind, "debias %s/%s", r->o.name, sub);
    p.kind = kind;
    return xd_train(m, NULL, &p, NULL);
}

/* The first phase's result: its own parameters, if it finished before (used on --resume;
 * without it the phase trains afresh). */
static int phase_done(const char *out_dir, const char *sub, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s/params.safetensors", out_dir, sub);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Once the first phase's result is written, its checkpoint (the moments of w and log α:
 * about 4 floats per weight) is no longer needed: a resumed run starts the second phase
 * from OUT/mask/params.safetensors. */
static void drop_checkpoint(const char *out_dir, const char *sub) {
    char p[XD_APATH_MAX + 64], target[256];
    snprintf(p, sizeof p, "%s/%s/checkpoint", out_dir, sub);
    ssize_t n = readlink(p, target, sizeof target - 1);
    if (n <= 0) return;
    target[n] = 0;
    unlink(p);
    snprintf(p, sizeof p, "%s/%s/%s", out_dir, sub, target);
    xd_rmtree(p);
}

static json_t *classes_json(const xd_label_column *c) {
    json_t *a = json_array();
    for (int k = 0; k < c->n_classes; k++) json_array_append_new(a, json_string(c->classes[k]));
    return a;
}

static json_t *hex_json(uint64_t h) {
    char s[24];
    snprintf(s, sizeof s, "%016llx", (unsigned long long)h);
    return json_string(s);
}

/* OUT/debias.json: what the run was and what it left (debias.h). */
static int write_summary(const char *out_dir, const run *r, const xd_debias_opts *o,
                         uint64_t base_hash, const xd_diff *diff, uint64_t parent_hash) {
    const xd_labeled *lab = r->train->lab;
    json_t *j = json_object(), *attrs = json_object();
    json_object_set_new(j, "format", json_string("xdistill-debias"));
    json_object_set_new(j, "name", json_string(o->name));
    json_object_set_new(j, "kind", json_string(r->head_trains ? "task" : "attribute"));
    json_object_set_new(j, "mode", json_string(o->mode == XD_DEBIAS_FULL ? "full" : "diff"));
    json_object_set_new(j, "text_field", json_string(o->text_field ? o->text_field : "text"));
    json_object_set_new(j, "label_field", json_string(lab->label.field));
    json_object_set_new(j, "classes", classes_json(&lab->label));
    for (int a = 0; a < lab->n_attr; a++)
        json_object_set_new(attrs, lab->attr[a].field, classes_json(&lab->attr[a]));
    json_object_set_new(j, "attributes", attrs);
    if (o->adv_attr) {
        json_object_set_new(j, "adversary", json_string(o->adv_attr));
        json_object_set_new(j, "adversary_heads", json_integer(o->adv_heads));
        json_object_set_new(j, "adversary_lambda", json_real(o->adv_lambda));
        if (o->adv_lambda_fixed >= 0)
            json_object_set_new(j, "adversary_lambda_fixed_mask", json_real(o->adv_lambda_fixed));
        if (o->adv_reset > 0) json_object_set_new(j, "adversary_reset_every", json_integer(o->adv_reset));
        if (o->adv_refit > 0) json_object_set_new(j, "adversary_refit_every", json_integer(o->adv_refit));
        json_object_set_new(j, "adversary_objective",
                            json_string(o->adv_confusion ? "confusion" : "reverse"));
        json_object_set_new(j, "adversary_conditional", json_boolean(o->adv_conditional));
        json_object_set_new(j, "adversary_reads", json_string(o->adv_tokens ? "tokens" : "pooled"));
        json_object_set_new(j, "balance", json_boolean(o->balance));
        if (o->mmd_weight > 0) {
            json_object_set_new(j, "mmd_weight", json_real(o->mmd_weight));
            json_object_set_new(j, "mmd_bank", json_integer(o->mmd_bank));
            json_object_set_new(j, "mmd_kernel", json_string(o->mmd_linear ? "linear" : "rbf"));
        }
    }
    if (o->pair_weight > 0 && r->pairs) {
        json_object_set_new(j, "counterfactual", json_string(r->train->lab->pair_source));
        json_object_set_new(j, "counterfactual_weight", json_real(o->pair_weight));
    }
    json_object_set_new(j, "pool", json_string(o->pool == XD_POOL_MEAN ? "mean" : "last"));
    json_object_set_new(j, "max_len", json_integer(o->max_len));
    json_object_set_new(j, "base_hash", hex_json(base_hash));
    json_object_set_new(j, "diff_weights", json_integer((json_int_t)r->n_w));
    json_object_set_new(j, "dense_bytes",
                        json_integer((json_int_t)(r->m->arena_floats * sizeof(float))));
    if (diff) {
        int64_t nnz = xd_diff_nnz(diff);
        json_object_set_new(j, "diff_hash", hex_json(xd_diff_hash(diff)));
        json_object_set_new(j, "nonzeros", json_integer(nnz));
        json_object_set_new(j, "nonzero_share", json_real((double)nnz / (double)r->n_w));
        json_object_set_new(j, "diff_bytes", json_integer(xd_diff_bytes(diff)));
        json_object_set_new(j, "share", json_real(o->share));
    }
    if (parent_hash) json_object_set_new(j, "task_diff_hash", hex_json(parent_hash));
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!txt) return xd_err("out of memory");
    char p[XD_APATH_MAX + 64];
    snprintf(p, sizeof p, "%s/debias.json", out_dir);
    int rc = xd_write_file_atomic(p, txt, strlen(txt));
    free(txt);
    return rc;
}

/* The heads of a finished run: OUT/head.safetensors (task runs), OUT/adversary.safetensors. */
static int write_heads(const char *out_dir, const run *r) {
    char p[XD_APATH_MAX], prefix[32];
    snprintf(p, sizeof p, "%s/head.safetensors", out_dir);
    if (r->head_trains && xd_head_save(&r->head, "head", p)) return -1;
    for (int k = 0; k < r->n_adv; k++) {
        snprintf(p, sizeof p, "%s/adversary.%d.safetensors", out_dir, k);
        snprintf(prefix, sizeof prefix, "adversary.%d", k);
        if (xd_head_save(&r->adv[k], prefix, p)) return -1;
    }
    return 0;
}

/* The fixed-mask phase's start: w = the eval-mask diff z̄ ⊙ w pruned by magnitude to the
 * share, the heads as the first phase left them. */
static int prune_into(run *r2, run *r1, double share) {
    materialize(r1, 0, 0); /* z = the eval-time mask */
    for (size_t i = 0; i < r1->n_w; i++) r1->z[i] *= r1->w[i];
    if (xd_magnitude_prune(r2->keep, r1->z, (int64_t)r1->n_w, share) < 0) return -1;
    for (size_t i = 0; i < r1->n_w; i++) r2->w[i] = r2->keep[i] ? r1->z[i] : 0.0f;
    /* the heads follow w (and log α) in the own arenas, in the same order */
    size_t h1 = r1->n_w * 2, h2 = r2->n_w, nh = r1->own.n_floats - h1;
    memcpy(r2->own.param + h2, r1->own.param + h1, nh * sizeof(float));
    return 0;
}

int xd_debias_train(xd_model *m, const xd_clf_data *train, const xd_clf_data *val,
                    const xd_debias_opts *opts, const xd_debias_frozen *frozen,
                    const xd_train_opts *o) {
    if (opts->mode == XD_DEBIAS_DIFF && !(opts->share > 0.0 && opts->share <= 1.0))
        return xd_err("--sparsity %g: the share of non-zeros must be in (0, 1]", opts->share);
    if (opts->adv_attr && (opts->adv_heads < 0 || opts->adv_heads > MAX_ADV))
        return xd_err("--adv-heads %d: expected 0 .. %d", opts->adv_heads, MAX_ADV);
    if (opts->adv_attr && opts->adv_heads == 0 && !(opts->mmd_weight > 0) &&
        !(opts->pair_weight > 0))
        return xd_err("--adv-heads 0 without --mmd or --cf-weight: nothing would remove %s",
                      opts->adv_attr);
    if (!(opts->pair_weight >= 0))
        return xd_err("--cf-weight %g: expected a weight >= 0", opts->pair_weight);
    if (!(opts->mmd_weight >= 0))
        return xd_err("--mmd %g: expected a weight >= 0", opts->mmd_weight);
    if (o->seq != opts->max_len)
        return xd_err("debias: the trainer's sequence (%d) must be --max-len (%d)", o->seq,
                      opts->max_len);
    if (opts->mode == XD_DEBIAS_DIFF && (opts->mask_steps < 1 || opts->mask_steps >= o->steps))
        return xd_err("--mask-steps %lld: expected 1 .. --steps - 1 = %lld",
                      (long long)opts->mask_steps, (long long)o->steps - 1);
    if (!frozen->task_diff != !frozen->task_head)
        return xd_err("debias: an attribute run needs both the task diff and the task head");
    if (xd_mkdir_p(o->out_dir)) return -1;
    if (train->n_cut || val->n_cut)
        xd_log(XD_LOG_INFO, "debias %s: %lld of %lld training and %lld of %lld validation "
               "examples are longer than --max-len %d tokens and were cut", opts->name,
               (long long)train->n_cut, (long long)train->n, (long long)val->n_cut,
               (long long)val->n, opts->max_len);
    uint64_t base_hash = xd_model_teacher_hash(m), parent = 0;
    float *theta0 = malloc(m->arena_floats * sizeof(float));
    if (!theta0) return xd_err("debias: out of memory for a copy of the weights");
    memcpy(theta0, m->arena, m->arena_floats * sizeof(float));
    if (frozen->task_diff) {
        /* the attribute diff sits on θ₀ + δ_task */
        parent = xd_diff_hash(frozen->task_diff);
        if (xd_diff_materialize(m, theta0, base_hash, &frozen->task_diff, 1)) {
            free(theta0);
            return xd_err_prefix("the task diff on this model");
        }
        memcpy(theta0, m->arena, m->arena_floats * sizeof(float));
    }
    run *r1 = NULL, *r2 = NULL;
    float *fh = (float *)frozen->task_head;
    xd_diff *diff = NULL;
    int rc = -1;
    char p[XD_APATH_MAX + 64];
    if (opts->mode == XD_DEBIAS_FULL) {
        if (!(r2 = xd_debias_run_new(m, theta0, PH_FULL, opts, train, val, fh, o)) ||
            run_phase(r2, m, o, o->out_dir, "full", o->steps))
            goto done;
        materialize(r2, 0, 0);
        snprintf(p, sizeof p, "%s/model", o->out_dir);
        if (xd_model_save(m, p)) goto done;
    } else {
        if (!(r1 = xd_debias_run_new(m, theta0, PH_MASK, opts, train, val, fh, o))) goto done;
        if (o->resume && phase_done(o->out_dir, "mask", p, sizeof p)) {
            if (xd_params_load(p, &r1->own)) goto done;
            xd_log(XD_LOG_INFO, "debias %s: the mask phase is done (%s)", opts->name, p);
        } else if (run_phase(r1, m, o, o->out_dir, "mask", opts->mask_steps))
            goto done;
        drop_checkpoint(o->out_dir, "mask");
        if (!(r2 = xd_debias_run_new(m, theta0, PH_FIXMASK, opts, train, val, fh, o)) ||
            prune_into(r2, r1, opts->share))
            goto done;
        xd_debias_run_free(r1);
        r1 = NULL;
        if (run_phase(r2, m, o, o->out_dir, "fixmask", o->steps - opts->mask_steps)) goto done;
        /* the diff: w where the mask keeps it (elsewhere w stayed exactly 0) */
        float *delta = calloc(m->arena_floats, sizeof(float));
        if (!delta) { xd_err("debias: out of memory"); goto done; }
        for (int t = 0; t < r2->nt; t++)
            memcpy(delta + r2->toff[t], r2->w + r2->woff[t],
                   (size_t)(r2->tw[t].rows * r2->tw[t].cols) * sizeof(float));
        diff = xd_diff_from_dense(m, opts->name, delta);
        free(delta);
        if (!diff) goto done;
        diff->base_hash = base_hash;
        diff->parent_hash = parent;
        snprintf(p, sizeof p, "%s/diff.safetensors", o->out_dir);
        if (xd_diff_save(diff, p)) goto done;
        materialize(r2, 0, 0);
    }
    if (write_heads(o->out_dir, r2) || write_summary(o->out_dir, r2, opts, base_hash, diff, parent))
        goto done;
    rc = 0;
done:
    xd_diff_free(diff);
    xd_debias_run_free(r1);
    xd_debias_run_free(r2);
    free(theta0);
    return rc;
}
