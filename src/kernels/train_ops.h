/* Training ops, llm.c style: each op is a plain forward and a backward
 * function. Backward functions ACCUMULATE (+=) into every gradient they
 * write (dx, dW, ...); a NULL gradient pointer means "not needed". Tensors
 * are row-major fp32; n = number of token rows. */
#ifndef XD_TRAIN_OPS_H
#define XD_TRAIN_OPS_H

#include <stdint.h>

/* ---- linear: y[n][out] = x[n][in] · W[out][in]ᵀ + b[out] (forward: xd_linear) */
void xd_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int n, int in, int out);

/* ---- LoRA (Hu et al. 2021) beside a frozen linear layer:
 *   y[n][out] += s · (x[n][in] · Aᵀ) · Bᵀ,  A [r][in], B [out][r]
 * The forward also writes ax = x·Aᵀ [n][r], which the backward reads. The
 * backward accumulates dx, dA and dB (NULL: not needed) and overwrites the
 * scratch dax [n][r]. */
void xd_lora_forward(float *y, float *ax, const float *x, const float *A, const float *B,
                     float s, int n, int in, int out, int r);
void xd_lora_backward(float *dx, float *dA, float *dB, float *dax, const float *dy,
                      const float *x, const float *ax, const float *A, const float *B, float s,
                      int n, int in, int out, int r);

/* ---- RMSNorm: y = x · r · w, r = 1/sqrt(mean(x²) + eps) (forward: xd_rmsnorm) */
void xd_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int n, int dim, float eps);

/* ---- RoPE with a position per row (packed documents restart at 0).
 * Forward rotates in place like xd_rope; backward rotates the gradient in
 * place by the opposite angle (the rotation is orthogonal). */
void xd_rope_pos(float *x, int n, int n_heads, int hd, int stride, const int32_t *pos,
                 const float *inv_freq);
void xd_rope_pos_backward(float *dx, int n, int n_heads, int hd, int stride, const int32_t *pos,
                          const float *inv_freq);

/* ---- SwiGLU: h = silu(g) ⊙ u */
void xd_swiglu_forward(float *h, const float *g, const float *u, int64_t n);
void xd_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u,
                        int64_t n);

/* ---- embedding: x[i] = E[tok[i]]; backward dE[tok[i]] += dx[i] */
void xd_embedding_forward(float *x, const float *E, const int32_t *tok, int n, int dim);
void xd_embedding_backward(float *dE, const float *dx, const int32_t *tok, int n, int dim);

/* ---- masked causal GQA attention for training, one sequence of T tokens.
 * Key s is visible to query t iff
 *     doc_start[t] <= s <= t   and   (s - doc_start[t] < sinks  or  t - s < window)
 * (window <= 0: no window, plain causal within the document; sinks are the
 * first `sinks` tokens of t's document). doc_start may be NULL (one document).
 *   q [T][nh·hd]  k, v [T][nkv·hd]  out [T][nh·hd]
 *   probs [nh][T][T]: softmax(q·kᵀ/√hd) saved for backward (0 where masked). */
void xd_attn_train_forward(float *out, float *probs, const float *q, const float *k,
                           const float *v, int T, int nh, int nkv, int hd,
                           const int32_t *doc_start, int window, int sinks);
void xd_attn_train_backward(float *dq, float *dk, float *dv, const float *dout,
                            const float *probs, const float *q, const float *k, const float *v,
                            int T, int nh, int nkv, int hd);

/* ---- softmax cross-entropy, fused. logits [n][V]; targets < 0 are ignored.
 * Returns the summed loss over valid targets; writes dlogits = scale ·
 * (softmax − onehot) (rows with ignored targets get 0). dlogits may alias
 * logits (the logits are then overwritten). This one OVERWRITES dlogits. */
double xd_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int n, int V,
                        float scale);

#endif
