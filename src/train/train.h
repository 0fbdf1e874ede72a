/* Training engine: model creation, the training loop, checkpoints. */
#ifndef XD_TRAIN_H
#define XD_TRAIN_H

#include <stdint.h>

#include "io/peft_adapter.h"
#include "io/tokdata.h"
#include "model/model.h"
#include "optim.h"
#include "xdistill.h"

/* A new model with random weights (GPT-2 style init), no tokenizer. */
xd_model *xd_model_create(const xd_config *cfg, uint64_t seed);

typedef struct {
    int64_t steps;        /* optimiser steps in total */
    int batch, seq;       /* rows per micro-batch, tokens per row */
    int accum;            /* micro-batches per step (gradient accumulation) */
    float lr, min_lr;     /* peak and final learning rate */
    int64_t warmup;       /* linear warm-up steps */
    float weight_decay;   /* decoupled, on matrices and embeddings only */
    float clip;           /* global grad-norm clip (0 = off) */
    float beta1, beta2, eps;
    int64_t eval_every;   /* validation every N steps (0 = only at the end) */
    int64_t eval_windows; /* validation windows per evaluation (0 = the whole split) */
    int64_t save_every;   /* checkpoint every N steps (0 = only at the end) */
    int64_t log_every;    /* JSONL log line every N steps */
    const char *out_dir;
    int resume;           /* continue from out_dir/checkpoint */
    int overlap_comm;     /* several MPI ranks: reduce each layer's gradients while the
                           * backward goes on (1, the default) or after it (0) */
    int64_t stop_at;      /* > 0: stop after this step with a checkpoint (no final model);
                           * a later run with resume continues as if never stopped */
    const char *const *freeze; /* substrings of HF weight names that do not train */
    int n_freeze;
    int window, sinks;    /* attention mask for training (0 = causal) */
    const char *kind;     /* "pretrain" / "finetune" / "stage1" ...: recorded in the log */
    const char *const *train_only; /* when n_train_only > 0: only weights whose HF name
                                    * contains one of these train (then `freeze` applies) */
    int n_train_only;
    struct xd_objective *objective; /* what a step minimises; NULL: next-token CE */
    xd_lora_adapter *lora; /* LoRA: only these adapters train (bound to the model here),
                            * the base stays frozen; at the end the adapter holds the
                            * trained weights and OUT/adapter is written, not OUT/model */
    const xd_lora_adapter *lora_pissa0; /* PiSSA: the initial adapter; OUT/adapter is then
                                         * the trained one converted to a LoRA of the
                                         * original base (xd_lora_pissa_convert) */
} xd_train_opts;

/* One micro-batch of B rows × T tokens (inputs, targets, document starts,
 * positions), as the trainer draws it from the token data. With a context
 * mask (instruction data, docs/data.md), tgt[t] is −1 where the target (row
 * token t + 1) is a context token, so no loss predicts it, and ctx[t] is
 * the mask byte of input token t (1: context, which EVA does not read; also 1
 * on the padding of validation rows; 0 everywhere without a mask). */
typedef struct {
    int32_t *row, *tok, *tgt, *ds, *pos;
    uint8_t *row_ctx; /* [B][T + 1]: the mask byte of each row token */
    uint8_t *ctx;     /* [B][T]: the mask byte of each input token */
} xd_batch;

struct xd_trainer_model;

/* A training objective other than next-token cross-entropy (Stage I's
 * per-layer MSE, Stage II's CE + KL). The trainer keeps the loop, the
 * optimiser, clipping, checkpoints, resume, logging and progress. */
typedef struct xd_objective {
    void *ctx;
    /* The number of loss terms of a micro-batch (the step's mean divides by
     * their sum over the accumulated micro-batches). */
    int64_t (*count)(struct xd_objective *ob, const xd_batch *bb, int B, int T);
    /* Forward (+ backward) over one micro-batch whose first row is stream
     * row `row0` of the train split (cursor / T): the summed loss, and the
     * gradients of grad_scale · loss_sum accumulated into tm->grads. */
    int (*step)(struct xd_objective *ob, struct xd_trainer_model *tm, const xd_batch *bb,
                uint64_t row0, int backward, float grad_scale, double *loss_sum);
    /* Validation: the mean loss over up to max_windows windows of the
     * validation split, and extra JSON members for the log (",\"k\":v..."). */
    int (*eval)(struct xd_objective *ob, struct xd_trainer_model *tm, const xd_tokdata *data,
                int64_t max_windows, double *loss, char *json, size_t cap);
    /* Extra JSON members for the log line of the last step (or NULL). */
    void (*log_extra)(struct xd_objective *ob, char *json, size_t cap);
    /* Optional hooks for objectives that are not language modelling (DiffPruning's
     * classification, src/train/debias.h); each NULL means "as for token data". */
    /* Draws the next micro-batch of B rows × T tokens itself (tok, pos, ds; the trainer's
     * token data is then not read and may be NULL) and advances *cursor. */
    int (*batch)(struct xd_objective *ob, uint64_t *cursor, int B, int T, xd_batch *bb);
    /* The parameters that train are the objective's, not the model's: the optimiser,
     * clipping, zeroing and checkpoints (OUT/ckpt-N/params.safetensors) work on these
     * groups (param/grad set, lr_scale per tensor); the model's gradient arena still
     * receives dL/dθ, which the objective maps onto its own in end_step. */
    struct xd_param_groups *params;
    /* Called before the first micro-batch of step `step` (0-based) after the gradients are
     * zeroed, and after the last one, before the optimiser: end_step adds the step's
     * regularisers to the gradients and their value to *loss (the mean already). */
    int (*begin_step)(struct xd_objective *ob, struct xd_trainer_model *tm, int64_t step);
    int (*end_step)(struct xd_objective *ob, struct xd_trainer_model *tm, int64_t step,
                    double *loss);
    /* Writes the result into out_dir instead of OUT/model. */
    int (*save)(struct xd_objective *ob, const char *out_dir);
} xd_objective;

void xd_train_defaults(xd_train_opts *o);
/* The rows of each micro-batch one rank computes: batch / ranks (core/dist.h); -1 with the
 * reason when batch does not split evenly among the ranks. Objectives and evaluations that
 * pair a model with the trainer's (teacher forwards) size them with this. */
int xd_train_rows_per_rank(int batch);

typedef struct {
    int64_t steps_done;
    double last_loss, val_loss;
    double tokens_per_s;
    double seconds;
} xd_train_result;

/* Trains m in place on the train split of data; validation on its val split.
 * Writes out_dir/log.jsonl, out_dir/checkpoint (a symlink to the newest
 * complete out_dir/ckpt-STEP directory) and finally out_dir/model. */
int xd_train(xd_model *m, const xd_tokdata *data, const xd_train_opts *o, xd_train_result *res);

/* Which weights train (not frozen by a name substring) and which decay
 * (matrices and embeddings; not norms or biases). w[i].ptr points into the
 * parameter arena: the model's, a LoRA set's, or (param != NULL) an
 * objective's own, with its gradients in grad (same layout, n_floats each). */
typedef struct xd_param_groups {
    xd_weight *w;
    int n;
    unsigned char *train, *decay;
    float *lr_scale;      /* [n] multiplies the scheduled learning rate (NULL: 1) */
    float *param, *grad;  /* an objective's own arenas (NULL: the model's / adapters') */
    size_t n_floats;
} xd_param_groups;

int xd_groups_init(xd_param_groups *g, const xd_model *m, const char *const *freeze, int n_freeze);
struct xd_lora_set;
/* Every tensor of a bound LoRA set trains and decays (as PEFT under HF's Trainer). */
int xd_groups_lora(xd_param_groups *g, const struct xd_lora_set *s);
/* Same with o's train_only and freeze lists. */
int xd_groups_from_opts(xd_param_groups *g, const xd_model *m, const xd_train_opts *o);
/* The next micro-batch of B rows × T tokens of the train split at *cursor
 * (advanced): inputs, next-token targets (−1 for context tokens), document
 * starts, positions, the inputs' context bytes. */
int xd_train_batch(const xd_tokdata *data, uint64_t *cursor, int B, int T, xd_batch *bb);
/* Buffers of a micro-batch of B rows × T tokens (xd_batch_free releases them). */
int xd_batch_alloc(xd_batch *bb, int B, int T);
void xd_batch_free(xd_batch *bb);
/* The number of validation windows of T tokens to evaluate: all of them, or
 * max_windows (> 0) when fewer; -1 naming the file when there are none. */
int xd_val_windows(const xd_tokdata *data, int T, int64_t max_windows, uint64_t *nw);
/* Validation windows of the split as batches: window k0 + b in row b
 * (targets −1 for context tokens, past a window's end and in rows past the
 * last window). Returns 0 or -1. */
int xd_val_batch(const xd_tokdata *data, int B, int T, uint64_t k0, uint64_t nw, xd_batch *bb);
void xd_groups_free(xd_param_groups *g);

/* One optimiser step on the accumulated gradients: global grad-norm clip
 * (clip > 0), then AdamW on the trainable weights (the adapters' with LoRA:
 * g from xd_groups_lora, opt sized for the set). Returns the grad norm
 * before clipping (non-finite: nothing was updated). */
double xd_optimizer_step(struct xd_trainer_model *tm, const xd_param_groups *g,
                         xd_adamw *opt, float lr, float weight_decay, float clip);
/* Mean loss over up to max_windows windows (0 = all) of the validation
 * split, in batches of tm's B rows of T tokens (forward only). */
int xd_eval_loss(struct xd_trainer_model *tm, const xd_tokdata *data, int64_t max_windows,
                 double *loss, int64_t *n_tokens);

#endif
