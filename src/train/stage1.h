/* Stage I of the distillation (docs/design.md, "Stage I"): per-layer alignment of the
 * student's new mixer parameters to the teacher. For every layer
 * independently: input = the teacher's hidden state entering the layer
 * (its normalised form and its q, k, v — the student shares W_Q, W_K, W_V
 * and the norms with the teacher), target = the teacher's attention output
 * before W_O; loss = MSE between the student mixer's output and the target.
 * One teacher forward per micro-batch feeds all layers. */
#ifndef XD_STAGE1_H
#define XD_STAGE1_H

#include "train.h"

/* The Stage I objective for xd_train (opts.objective): the step's loss is
 * Σ_layers MSE_l. The student must have been converted from this teacher
 * (same architecture and shapes; checked). Its log lines carry "layer_mse"
 * (the last step's per-layer MSE) and, with validation, "val_layer_mse". */
typedef struct xd_stage1 xd_stage1;
xd_stage1 *xd_stage1_create(xd_model *teacher, const xd_model *student, int B, int T);
void xd_stage1_free(xd_stage1 *s1);
xd_objective *xd_stage1_objective(xd_stage1 *s1);
/* Per-layer validation MSE of `student` (forward only; max_windows as in
 * xd_eval_loss); mse[n_layer]. Returns the mean over layers. */
int xd_stage1_eval(xd_stage1 *s1, struct xd_trainer_model *tm, const xd_tokdata *data,
                   int64_t max_windows, double *mse, double *mean);

/* The names of the mixer's new parameters (train_only for stages I, II). */
extern const char *const xd_mixer_param_names[];
extern const int xd_n_mixer_param_names;

#endif
