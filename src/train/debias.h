/* Modular DiffPruning debiasing (Guo et al. 2021; Hauzenberger et al. 2023; docs/design.md,
 * "Debiasing"): an encoder (any model xdistill loads: the final norm's output, pooled) with a
 * classification head, fine-tuned as a sparse diff δ = z ⊙ w over frozen weights θ₀.
 *
 * A run trains in two phases on the trainer (train.h: resume, log, progress, checkpoints):
 *   OUT/mask     θ = θ₀ + z ⊙ w, z a hard-concrete sample per step (kernels/hard_concrete.h),
 *                loss = CE + l0_weight · E[L0](log α); w, log α and the heads train;
 *   then magnitude pruning of the eval-mask diff z̄ ⊙ w to exactly `share` of the entries;
 *   OUT/fixmask  θ = θ₀ + m ⊙ w with that binary mask m fixed: only the kept entries train,
 *                so the share of non-zeros stays exactly the pruned one.
 * Full fine-tuning (the baseline) is one phase, OUT/full, θ = θ₀ + w with every entry.
 * An attribute diff trains the same way on θ₀ + δ_task with the task head frozen, and an
 * ensemble of adversary heads reads the pooled representation through gradient reversal
 * (λ): the heads learn the attribute, the diff learns to hide it. The task run may also
 * carry an adversary (full fine-tuning with an adversary: the non-modular baseline). */
#ifndef XD_DEBIAS_H
#define XD_DEBIAS_H

#include <stdint.h>

#include "clf_data.h"
#include "model/diff.h"
#include "train.h"

typedef enum { XD_DEBIAS_FULL = 0, XD_DEBIAS_DIFF = 1 } xd_debias_mode;

typedef struct {
    xd_debias_mode mode;
    xd_pool_mode pool;
    int max_len;           /* tokens per example */
    double share;          /* DIFF: the share of non-zeros the diff is pruned to, (0, 1] */
    int64_t mask_steps;    /* DIFF: steps of the first phase (the rest of o->steps: fixed mask) */
    float log_alpha_init;  /* initial log α (5: every z starts at 1) */
    float l0_weight;       /* weight of the expected-L0 term */
    float stretch_l, stretch_r;
    float lr_alpha, lr_head, lr_adv; /* learning rates of log α and the heads (w: o->lr) */
    float head_dropout, adv_dropout;
    int adv_heads;         /* adversary ensemble size (0: no adversary) */
    float adv_lambda;      /* weight of the adversarial term in the encoder's loss */
    float adv_lambda_fixed; /* DIFF: λ in the fixed-mask phase (< 0: adv_lambda) */
    int adv_confusion;     /* the encoder's adversarial term: 0 (reverse) −λ · the heads'
                            * cross-entropy, by gradient reversal; 1 (confusion) +λ · the
                            * heads' cross-entropy to the uniform distribution, so the
                            * encoder makes them guess instead of making them wrong */
    int adv_conditional;   /* the adversary heads also read the task label (one-hot, after
                            * the pooled representation), so they can only gain from what
                            * the representation tells about the attribute beyond the
                            * label: the diff is pushed to hide that, not the label's
                            * correlation with the attribute (Zhang, Lemoine & Mitchell
                            * 2018, the adversary for equality of odds) */
    float mmd_weight;      /* > 0: the encoder also minimises mmd_weight · a class-conditional
                            * kernel two-sample term (kernels/mmd.h) between the attribute's
                            * groups: each row's pooled representation against a bank of
                            * earlier ones of the same class, its own group and the others.
                            * Unlike the adversary it has no heads to co-adapt with: at 0 no
                            * attacker can tell the groups apart (within a class) */
    int mmd_bank;          /* rows kept per (class, attribute group) in that bank (64) */
    int mmd_linear;        /* the term's kernel: 0 a sum of Gaussian kernels (bandwidths
                            * from the bank's mean squared distance), 1 linear on
                            * standardised features (the groups' means apart in units of
                            * each dimension's standard deviation: what a linear probe
                            * reads; kernels/mmd.h) */
    int adv_reset;         /* > 0: the adversary heads start afresh (new initialisation)
                            * every adv_reset steps, so the diff faces attackers that did
                            * not co-adapt with it, as the post-hoc attacker is (0: never) */
    int adv_refit;         /* > 0: every adv_refit steps the adversary heads are trained
                            * afresh, as the post-hoc attacker (xd_attack_fit: new
                            * initialisation, AdamW lr 1e-3, 10 epochs of 64), on the bank of
                            * recent representations (mmd_bank rows per class and group), so
                            * the diff faces an attacker fitted to what it hides now, not heads
                            * that co-adapted with it (0: never) */
    int adv_tokens;        /* the adversary heads read every real token's final-norm output
                            * (its example's attribute as the target; each example's term
                            * the mean over its tokens) instead of the pooled representation,
                            * so the diff hides the attribute at every position, not only in
                            * the mean the post-hoc attacker reads (0: pooled) */
    int balance;           /* the training rows' losses (task and adversary) weighted by
                            * xd_balance_weights over (label, adv_attr), so that under the
                            * weights the label tells nothing of the attribute: the task
                            * loss no longer pays for encoding it, and the adversary cannot
                            * read it from the label's features (0: off) */
    float pair_weight;     /* > 0 with counterfactual texts (train->pair): the encoder also
                            * minimises pair_weight · the invariance term
                            * (kernels/pair_dist.h) between each training example's pooled
                            * representation and its counterfactual's, which rides in the
                            * same batch (the trainer's rows are then 2 · o->batch: the
                            * examples, then their counterfactuals). The counterfactual rows
                            * carry no task or adversary loss (0: off) */
    const char *adv_attr;  /* the attribute field the adversary (and the MMD term) reads
                            * (NULL: none) */
    uint64_t seed;
    const char *name;      /* the diff's name: "task" or the attribute */
    const char *text_field; /* recorded in OUT/debias.json */
} xd_debias_opts;

/* The peer's defaults (CPJKU/ModularizedDebiasing cfg.yml), with share 0.05. */
void xd_debias_defaults(xd_debias_opts *d);

/* What a task run leaves in OUT and an attribute run reads: the base, the frozen task diff
 * (NULL for a task run) and head (NULL: a new one is trained). */
typedef struct {
    const xd_diff *task_diff;    /* attribute runs: applied below the new diff, frozen */
    const float *task_head;      /* attribute runs: the task head's parameters, frozen */
} xd_debias_frozen;

/* Trains on train (val: validation), writing under out_dir (see above) and at the end:
 *   OUT/diff.safetensors  (DIFF) the sparse diff, named opts->name, recording the base's hash
 *                         and, for an attribute, the task diff's hash (xd_diff.parent_hash);
 *   OUT/model/            (FULL) the fine-tuned model;
 *   OUT/head.safetensors  the task head (task runs), OUT/adversary.safetensors (adversary);
 *   OUT/debias.json       what the run was: fields, classes, pooling, sizes.
 * m holds θ₀ and is left holding the trained weights. o: the trainer's options (steps,
 * batch, lr of w, clip, resume, ...); o->seq must equal opts->max_len. */
int xd_debias_train(xd_model *m, const xd_clf_data *train, const xd_clf_data *val,
                    const xd_debias_opts *opts, const xd_debias_frozen *frozen,
                    const xd_train_opts *o);

/* One phase's objective on the trainer (xd_debias_train runs them; exposed for tests):
 * the model is materialised from theta0 ([arena_floats], kept by the caller) before every
 * step, its own parameters are ob->params (tensors "diff.W", "log_alpha.W", "head.l.*",
 * "adversary.k.l.*"). frozen_head: the task head's parameters when it does not train. */
enum { XD_DEBIAS_PHASE_FULL = 0, XD_DEBIAS_PHASE_MASK = 1, XD_DEBIAS_PHASE_FIXMASK = 2 };
typedef struct xd_debias_run xd_debias_run;
xd_debias_run *xd_debias_run_new(xd_model *m, const float *theta0, int phase,
                                 const xd_debias_opts *o, const xd_clf_data *train,
                                 const xd_clf_data *val, float *frozen_head,
                                 const xd_train_opts *to);
void xd_debias_run_free(xd_debias_run *r);
xd_objective *xd_debias_objective(xd_debias_run *r);
/* Since the last begin_step, summed over the micro-batches' examples: the task loss, the
 * adversary's (mean over its heads), the confusion and MMD terms and the invariance term
 * (unweighted); and the expected L0 of the last end_step. */
void xd_debias_losses(const xd_debias_run *r, double *task, double *adv, double *conf, double *mmd,
                      double *pair, double *l0);

#endif
