/* Training forward/backward of the student's hybrid mixer (docs/design.md, "Student layer") over
 * B packed rows of T tokens: the same math as the inference mixer
 * (src/model/student.c), with every activation the backward needs kept.
 * Used per layer by Stage I (alignment to the teacher's attention output)
 * and inside the whole-model step for Stage II.
 *
 * Branches, per row (doc_start as in xd_attn_train_forward: neither branch
 * looks across a document; the mLSTM state resets at a document start):
 *   hs  = SWA(q, k, v)   causal softmax attention, window W + S sinks
 *   φq  = hedgehog_q(q), φk = hedgehog_k(k)   (post-RoPE q, k; one map per
 *                                              query head, GQA keys shared)
 *   ĩ, f̃ = softcap(W_i h1 + b_i), softcap(W_f h1 + b_f)
 *   hm  = mLSTM(φq, φk, v per query head, ĩ, f̃)   (chunkwise form)
 *   o   = σ(w_o·[q̄; k̄; v] + b_o)   q̄, k̄ before RoPE
 *   att = o·hm + (1 − o)·hs                      [BT][nh·hd], before W_O
 * except for the global heads of the layer (docs/design.md, "Global heads"): their slice
 * of att is the causal softmax attention over the whole document (the teacher's), and
 * their gradient flows through it only (hm, hs, o of those heads get none). */
#ifndef XD_MIXER_TRAIN_H
#define XD_MIXER_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    float *qp, *kp;         /* q, k before RoPE [BT][qd], [BT][kvd] (the caller fills them) */
    float *phq, *phk;       /* [BT][nh][2hd] */
    float *ve;              /* [BT][nh][hd] values per query head */
    float *ig_raw, *fg_raw; /* gate pre-activations before the soft-cap [BT][nh] */
    float *ig, *fg;         /* after it */
    float *hm, *hs;         /* branch outputs [BT][nh·hd] */
    float *o;               /* mix gate [BT][nh] */
    float *cache;           /* [B][xd_mlstm_cache_floats(T)] */
    float *probs;           /* [B][nh][T][T] SWA probabilities */
    float *gprobs;          /* [B][n_g][T][T] probabilities of the layer's n_g global heads */
    const float *ig_add, *fg_add; /* NULL, or terms [BT][nh] the forward adds to ig_raw, fg_raw
                                   * before the soft-cap (LoRA on the gate projections; the
                                   * caller sets them before each forward) */
} xd_mixer_acts;

/* Backward scratch (shared by all layers). */
typedef struct {
    float *dhm, *dhs, *dphq, *dphk, *dve, *dig, *dfg, *dig_raw, *dfg_raw;
    float *dmix; /* [BT][nh·hd] datt with the global heads zeroed (students with global heads) */
} xd_mixer_scratch;

/* Lays out (base != NULL) or counts (base == NULL) the floats of layer `layer`'s
 * activations / of the scratch; returns the count. */
size_t xd_mixer_acts_layout(const xd_config *c, int layer, int B, int T, xd_mixer_acts *a,
                            float *base);
size_t xd_mixer_scratch_layout(const xd_config *c, int B, int T, xd_mixer_scratch *s, float *base);

/* Forward: h1 [BT][d] the normalised layer input; q [BT][qd], k, v [BT][kvd]
 * after RoPE; a->qp, a->kp filled by the caller. Writes att [BT][qd].
 * Returns 0, or -1 (out of memory in the mLSTM). */
int xd_mixer_train_forward(const xd_config *c, int layer, const xd_layer *L, xd_mixer_acts *a,
                           const float *h1, const float *q, const float *k, const float *v,
                           const int32_t *doc_start, int B, int T, float *att);

/* Where the backward sends the gradients of its inputs (each NULL = not
 * needed; all accumulate): dh1 [BT][d]; dq, dk w.r.t. the post-RoPE q, k;
 * dqp, dkp w.r.t. the pre-RoPE ones (the mix gate's input); dv. */
typedef struct {
    float *dh1, *dq, *dk, *dv, *dqp, *dkp;
} xd_mixer_dinputs;

/* Backward of the forward above (same inputs, a unchanged): datt [BT][qd].
 * Accumulates the new parameters' gradients into G (fmq_*, fmk_*, w_ig, b_ig,
 * w_fg, b_fg, w_mix, b_mix) and the input gradients into din. */
int xd_mixer_train_backward(const xd_config *c, int layer, const xd_layer *L, xd_layer *G,
                            const xd_mixer_acts *a, const xd_mixer_scratch *s,
                            const xd_mixer_dinputs *din, const float *datt, const float *h1,
                            const float *q, const float *k, const float *v,
                            const int32_t *doc_start, int B, int T);

#endif
