/* Stage II of the distillation (docs/design.md, "Stage II"): end-to-end training of the
 * student on 0.9·CE(next token) + 0.1·KL(teacher top-k ‖ student), the
 * teacher's top-k logits read from a file `xdistill teacher-logits` made
 * offline for the same token data and sequence length. */
#ifndef XD_STAGE2_H
#define XD_STAGE2_H

#include "io/topk_logits.h"
#include "train.h"

typedef struct {
    float w_ce, w_kl;       /* loss weights (0.9, 0.1) */
    xd_model *teacher;      /* optional: validation KL computed live (NULL: none) */
} xd_stage2_opts;

typedef struct xd_stage2 xd_stage2;

/* Checks the logits file against the student (vocabulary, the teacher it was
 * converted from when the student records it), the data (hash) and the
 * training options (sequence length; enough rows for steps × accum × batch).
 * Errors name the file, the field and both values. */
xd_stage2 *xd_stage2_create(const xd_topk *logits, const xd_model *student,
                            const xd_tokdata *data, const xd_train_opts *o,
                            const xd_stage2_opts *so);
void xd_stage2_free(xd_stage2 *s2);
xd_objective *xd_stage2_objective(xd_stage2 *s2);
/* Validation: the student's mean CE and (with a teacher) mean top-k KL per
 * token over up to max_windows windows. kl = NaN without a teacher. */
int xd_stage2_eval(xd_stage2 *s2, struct xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *ce, double *kl);

#endif
