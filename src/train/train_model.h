/* Training forward/backward of the transformer (all four teacher
 * architectures) over a batch of B packed rows of T tokens. llm.c style:
 * parameters live in the model's arena, gradients in a second arena with the
 * same layout, activations in one buffer sized once for (B, T). */
#ifndef XD_TRAIN_MODEL_H
#define XD_TRAIN_MODEL_H

#include "mixer_train.h"
#include "model/lora.h"
#include "model/model.h"

/* Saved activations of one layer ([BT][...] unless noted). */
typedef struct {
    float *x_in;         /* residual stream entering the layer */
    float *h1;           /* attention-input norm (NULL for OLMo-2: the input is x_in) */
    float *q_raw, *k_raw; /* projections before q/k norm (only with qk_norm) */
    float *q, *k, *v;    /* after norm + RoPE */
    float *probs;        /* [B][nh][T][T] attention probabilities */
    float *att;          /* attention output before W_O */
    float *o_raw;        /* W_O output (before the OLMo-2 post-norm) */
    float *x_mid;        /* residual after the attention block */
    float *h2;           /* MLP-input norm (NULL for OLMo-2) */
    float *g, *u, *sw;   /* gate, up, silu(g)·u */
    float *m_raw;        /* W_down output (before the OLMo-2 post-norm) */
    xd_mixer_acts mx;    /* student: the hybrid mixer's activations (probs unused) */
    float *lax[XD_LORA_NT]; /* LoRA: x·Aᵀ [BT][rank] of each adapted linear layer */
} xd_layer_acts;

typedef struct xd_trainer_model {
    xd_model *m;
    xd_model grads;       /* same layout as m, pointers into grad_arena */
    float *grad_arena;
    int B, T;
    int window, sinks;    /* attention mask (0 = plain causal), for students/tests */
    const xd_lora_set *lora; /* LoRA adapters applied beside the linear layers (NULL: none);
                              * with one, the base is frozen: no gradient arena, and the
                              * backward fills lora->grad */
    float *lora_dax;         /* LoRA backward scratch [BT][max rank] */
    float *gate_add;         /* student with LoRA: the gate projections' LoRA terms [2][BT][nh] */
    xd_layer_acts *acts;
    float *act_arena;
    size_t act_floats;
    float *x_final, *x_norm, *logits; /* [BT][d], [BT][d], [BT][V] (logits reused as dlogits) */
    /* backward scratch */
    float *dx, *dx2, *dh, *dq, *dk, *dv, *datt, *dg, *du, *dsw, *dk_raw;
    float *dqp, *dkp, *dh_mix;   /* student: mixer gradients w.r.t. pre-RoPE q, k and h1 */
    xd_mixer_scratch mxs;        /* student: mixer backward scratch */
    /* per-batch inputs */
    int32_t *pos, *doc_start; /* [B][T] */
    /* Stage II: when kd_ids is set, the loss is w_ce·CE + w_kl·KL against the
     * teacher's top-k (xd_distill_loss) instead of CE; kd_ce / kd_kl receive
     * the last step's unweighted sums */
    const int32_t *kd_ids;    /* [B·T][kd_k] */
    const float *kd_vals;     /* [B·T][kd_k] */
    int kd_k;
    float kd_w_ce, kd_w_kl;
    double kd_ce, kd_kl;
    /* when set, called by the backward as soon as layer l's weight gradients are complete
     * (after its backward; the layers in reverse): the trainer's overlapped reduction. So a
     * step that sets it must not run a second backward over tm afterwards */
    void (*layer_done)(void *ctx, int layer);
    void *layer_done_ctx;
} xd_trainer_model;

/* Allocates gradients and activations for batches of B×T. */
int xd_tm_init(xd_trainer_model *tm, xd_model *m, int B, int T);
/* with_grads = 0: forward only (no gradient arena; the backward must not
 * be asked for). */
int xd_tm_init_ex(xd_trainer_model *tm, xd_model *m, int B, int T, int with_grads);
/* With LoRA adapters bound to m (lora.h; with a gradient arena when the
 * backward will be asked for): the base gets no gradients, only the adapters. */
int xd_tm_init_lora(xd_trainer_model *tm, xd_model *m, const xd_lora_set *lora, int B, int T);
void xd_tm_free(xd_trainer_model *tm);
/* Zeroes the gradients (the adapters' with LoRA). */
void xd_tm_zero_grad(xd_trainer_model *tm);

/* Forward over tokens [B][T]; pos/doc_start [B][T] may be NULL (one document
 * per row, positions 0..T-1). If targets [B][T] is non-NULL, returns the
 * summed cross-entropy over targets ≥ 0 in *loss_sum and their count in
 * *n_valid, and (when backward != 0) accumulates the gradients of
 * grad_scale · loss_sum into tm->grads. */
int xd_tm_step(xd_trainer_model *tm, const int32_t *tokens, const int32_t *targets,
               const int32_t *pos, const int32_t *doc_start, int backward, float grad_scale,
               double *loss_sum, int64_t *n_valid);

/* For heads on the hidden states (a classifier on a pooled encoder output):
 * after xd_tm_step(tm, tokens, NULL, ...) has left the final norm's output in
 * tm->x_norm [B·T][d], accumulates into tm->grads the gradients of
 * Σ dnorm ⊙ x_norm (dnorm [B·T][d], not tm->dh). */
int xd_tm_backward_hidden(xd_trainer_model *tm, const int32_t *tokens, const float *dnorm);

#endif
