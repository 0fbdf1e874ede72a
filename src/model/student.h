/* The xLSTM hybrid student at inference (docs/design.md, "Student layer"): the mixer that replaces
 * each attention layer, its constant-size decoding state, and conversion of
 * a teacher into a student. */
#ifndef XD_STUDENT_H
#define XD_STUDENT_H

#include "kernels/mlstm.h"
#include "model.h"

/* The mLSTM configuration of a student's mixer (H = n_head, d_φ = 2·hd). */
xd_mlstm_cfg xd_student_mlstm_cfg(const xd_config *c);

/* Student fields of xd_kv: allocated by xd_kv_create when m is a student. */
int xd_student_kv_alloc(xd_kv *kv, const xd_model *m);
void xd_student_kv_free(xd_kv *kv);
void xd_student_kv_reset(xd_kv *kv);
/* dst = src (same model): sinks, window buffer, mLSTM state (not pos). */
int xd_student_kv_copy(xd_kv *dst, const xd_kv *src);
/* Bytes of the student's decoding state at its current position: constant in the
 * length, plus 2·head_dim floats per position for each (layer, KV head) pair of the
 * global heads (docs/design.md, "Decoding state"; the buffers' capacity may be up to
 * twice that). */
size_t xd_student_kv_bytes(const xd_kv *kv);
/* The same for a student of config c after len positions, without a state (e.g. the
 * state at 16K tokens). */
size_t xd_student_state_bytes(const xd_config *c, int64_t len);
/* The most global (layer, KV head) pairs that a student of teacher t, converted with o's
 * window, sinks and global_kv_dtype, can keep while its whole decoding state at len
 * tokens stays within frac of the teacher's fp32 KV cache at that length (2·n_layer·
 * n_kv_head·head_dim floats per token): at most n_layer·n_kv_head. −1 (error set) for
 * frac outside (0, 1], len < 1, or a constant state that alone exceeds the budget. */
int xd_student_pairs_within(const xd_config *t, const xd_student_opts *o, double frac,
                            int64_t len);

/* Before a forward of n tokens at kv->pos: plans where the new keys go (the
 * same for every layer). After all layers: xd_student_kv_commit. */
typedef struct {
    int64_t pos0;
    int n;
    int64_t keep;     /* window entries kept from before (moved to the buffer's front) */
    int64_t na;       /* new positions ≥ sinks */
    int use_temp;     /* the run does not fit in the buffer: a temporary run buffer */
} xd_student_plan;
void xd_student_plan_make(xd_student_plan *p, const xd_kv *kv, int n);
void xd_student_kv_commit(xd_kv *kv, const xd_student_plan *p);

/* The mLSTM branch's inputs for n tokens, shared by inference and training:
 * φq, φk [n][nh][2hd] (Hedgehog maps of the post-RoPE q [n][nh·hd] and
 * k [n][nkv·hd]), ve [n][nh][hd] (each query head's KV-group value), and the
 * gate pre-activations ig_raw, fg_raw = W·h + b (+ ig_add, fg_add [n][nh] when not
 * NULL: LoRA beside the gate projections in training) and their soft-capped
 * ig, fg (ig may be ig_raw, fg may be fg_raw: capped in place). */
void xd_student_mlstm_inputs(const xd_config *c, const xd_layer *L, int n, const float *h,
                             const float *q, const float *k, const float *v,
                             const float *ig_add, const float *fg_add, float *phq, float *phk,
                             float *ve, float *ig_raw, float *fg_raw, float *ig, float *fg);

/* The hybrid mixer of layer l for n tokens at positions p->pos0 …:
 *   h [n][d]            the normalised layer input (gates)
 *   q [n][nh·hd], k, v [n][nkv·hd]   after q/k norm and RoPE
 *   qp, kp              q and k before RoPE (the mix gate's input)
 * writes att [n][nh·hd] (before W_O) and advances layer l's state (window,
 * sinks, mLSTM). Returns 0 or -1 (out of memory). */
int xd_student_mixer(const xd_model *m, const xd_layer *L, xd_kv *kv, int l,
                     const xd_student_plan *p, const float *h, const float *q, const float *k,
                     const float *v, const float *qp, const float *kp, float *att);

#endif
