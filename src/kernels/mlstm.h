/* The mLSTM cell (docs/design.md, "mLSTM branch") in three forms:
 *
 *   parallel    O(T²) reference, the parallel form written literally (double inside)
 *   chunkwise   the training form: inter-chunk states by the recurrence,
 *               intra-chunk by the parallel form; memory linear in T; backward
 *   recurrent   one token at a time from a state (decoding)
 *
 * Per head, with lf_t = logsigmoid(f̃_t) and φq, φk the feature-mapped
 * queries/keys (the feature map is not part of this op):
 *   log D_ts = Σ_{r=s+1..t} lf_r + ĩ_s   for doc(t) ≤ s ≤ t   (−∞ otherwise)
 *   m_t      = max_s log D_ts                       (and the initial state's
 *                                                    log weight, see below)
 *   C̃_ts     = s·(φq_t·φk_s)·exp(log D_ts − m_t)
 *   h_t      = Σ_s C̃_ts v_s / (max(|Σ_s C̃_ts|, exp(−m_t)) + ε)
 * Recurrent form (docs/design.md): m_t = max(lf_t + m_{t−1}, ĩ_t),
 *   C_t = f'C_{t−1} + i' φk_t v_tᵀ, n_t = f'n_{t−1} + i' φk_t,
 *   f' = exp(lf_t + m_{t−1} − m_t), i' = exp(ĩ_t − m_t),
 *   h_t = s·φq_tᵀC_t / (max(|s·φq_t·n_t|, exp(−m_t)) + ε).
 *
 * STATE. A state (C, n, m) stands for the unnormalised sums e^m·C and e^m·n
 * of everything seen so far; m is only a stabiliser. Given as the initial
 * state of a sequence it acts as one more source for the tokens of the first
 * document, with log weight Σ_{r≤t} lf_r + m (it decays by the forget gates
 * like any earlier token) and contents (C, n). With no initial state (NULL)
 * the chunkwise and parallel forms start empty: m_t is the max over the
 * tokens only, exactly the parallel form above. The recurrent form starts from
 * xd_mlstm_state_zero (C = 0, n = 0, m = 0: the recurrence's m_0 = 0), which differs
 * from "empty" only in m_t = max(Σ lf, …), and h does not depend on m except
 * through ε (see "Agreement" below).
 *
 * DOCUMENTS. doc_start[t] (NULL: one document) is the index of the first
 * token of t's document, as in xd_attn_train_forward; documents must be
 * contiguous (doc_start[t] is t or doc_start[t−1], doc_start[0] = 0). At a
 * document start t > 0 the state resets as if f_t = 0: nothing before t
 * contributes to t or later tokens of that document. The initial state
 * belongs to the first document (doc_start[t] == 0); to reset it at token 0
 * pass init = NULL.
 *
 * AGREEMENT. exp(−m) and the stabilised sums scale alike, so in true units
 * h_t = N_t / (max(|Z_t|, 1) + ε·e^{m_t}) with N_t, Z_t the unstabilised
 * numerator and q̂ᵀn: a different m changes h only through ε·e^{m_t}. The
 * forms choose the same m except the recurrent one's m_0 = 0 term, which
 * wins only when every token's log weight is below Σ lf ≤ 0, i.e. when
 * e^{m} ≤ 1 for both choices: the relative difference is then ≤ ε = 1e-6.
 *
 * LAYOUT. One sequence of T tokens, all heads, row-major fp32:
 *   q, k [T][H][dphi]   v, h [T][H][dv]   ig, fg [T][H]   doc_start [T]
 *   state: C [H][dphi][dv], n [H][dphi], m [H].
 * Offsets are 64-bit throughout. Results do not depend on the number of
 * threads (every element is computed by one job in a fixed order; every
 * sgemm runs on one thread inside an OpenMP region: mlstm_chunk.c).
 *
 * GRADIENTS follow train_ops.h: backward ACCUMULATES (+=) into every
 * gradient it is given; a NULL pointer means "not needed". The gradient is
 * that of exactly the function the forward computes: m is not detached (it
 * matters only through ε and the exp(−m) branch of the max), and the max
 * follows the branch taken, as autograd does. */
#ifndef XD_MLSTM_H
#define XD_MLSTM_H

#include <stdint.h>

typedef struct {
    int H;       /* heads */
    int dphi;    /* feature dimension d_φ of q and k */
    int dv;      /* value dimension */
    int chunk;   /* chunk length L of the chunkwise form (default 64; any T works) */
    float scale; /* s, applied to q (default 1/√d_φ) */
    float eps;   /* ε (default 1e-6) */
} xd_mlstm_cfg;

/* H, dphi, dv with the defaults: chunk 64, scale 1/√dphi, eps 1e-6. */
xd_mlstm_cfg xd_mlstm_cfg_default(int H, int dphi, int dv);

typedef struct {
    float *C; /* [H][dphi][dv] */
    float *n; /* [H][dphi] */
    float *m; /* [H] */
} xd_mlstm_state;

/* The inputs of one sequence (layout above). */
typedef struct {
    const float *q, *k, *v;   /* φ(q), φ(k) [T][H][dphi], v [T][H][dv] */
    const float *ig, *fg;     /* gate pre-activations ĩ, f̃ [T][H] */
    const int32_t *doc_start; /* [T], or NULL: one document */
} xd_mlstm_in;

/* Gradients w.r.t. the inputs; each NULL = not needed. */
typedef struct {
    float *q, *k, *v, *ig, *fg;
} xd_mlstm_grads;

/* C = 0, n = 0, m = 0. */
void xd_mlstm_state_zero(xd_mlstm_state *st, const xd_mlstm_cfg *cfg);

/* ---- chunkwise form (training, prefill) ----------------------------------
 * Floats of the cache the forward fills for the backward: the state entering
 * each chunk and two floats per token and head (((T+L−1)/L + 1)·H·(dphi·dv +
 * dphi + 1) + 2·T·H; linear in T). */
int64_t xd_mlstm_cache_floats(int64_t T, const xd_mlstm_cfg *cfg);

/* h [T][H][dv] = the cell over T ≥ 0 tokens. init: the initial state or NULL
 * (empty). final (or NULL): receives the state after the last token (may be
 * init itself: prefill in pieces; T = 0 copies init, or gives the zero
 * state). cache (or NULL when there will be no backward): the
 * xd_mlstm_cache_floats buffer. Returns 0, or −1 (xd_last_error) when
 * scratch memory cannot be had. */
int xd_mlstm_chunk_forward(float *h, float *cache, xd_mlstm_state *final, const xd_mlstm_in *in,
                           const xd_mlstm_state *init, int64_t T, const xd_mlstm_cfg *cfg);

/* Backward of xd_mlstm_chunk_forward, called with the same in, T, cfg, the
 * same init-or-NULL (only whether it is NULL matters: its values were copied
 * into the cache, so final may have overwritten it) and the h and cache the
 * forward produced (unchanged). dh [T][H][dv]: ∂loss/∂h. dfinal (or NULL = 0): ∂loss/∂ the final
 * state (C, n and m; all three given). Accumulates into g's non-NULL
 * members and, when dinit is given (all three members), into ∂loss/∂init.
 * Returns 0, or −1 when scratch memory cannot be had. */
int xd_mlstm_chunk_backward(const xd_mlstm_grads *g, xd_mlstm_state *dinit, const float *dh,
                            const xd_mlstm_state *dfinal, const float *h, const float *cache,
                            const xd_mlstm_in *in, const xd_mlstm_state *init, int64_t T,
                            const xd_mlstm_cfg *cfg);

/* ---- parallel form (reference) --------------------------------------------
 * The parallel form above, O(T²·H·(dphi+dv)), computed in double; init and
 * final as in the chunkwise form (final's m is the last token's m_t). */
int xd_mlstm_parallel_forward(float *h, xd_mlstm_state *final, const xd_mlstm_in *in,
                              const xd_mlstm_state *init, int64_t T, const xd_mlstm_cfg *cfg);

/* ---- recurrent form (decoding) --------------------------------------------
 * One token, all heads: q, k [H][dphi], v [H][dv], ig, fg [H]; st is updated
 * in place and h [H][dv] written. reset ≠ 0: a document starts here (f = 0).
 * The gate arithmetic (m, f', i') is in double, C and n in fp32. */
void xd_mlstm_step(float *h, xd_mlstm_state *st, const float *q, const float *k, const float *v,
                   const float *ig, const float *fg, int reset, const xd_mlstm_cfg *cfg);

/* What head `head` of the state returns for n queries φ (rows of phi, stride ldphi
 * floats) without updating it: the step's output formula
 *     h = s·Cᵀφ / (max(|s·nᵀφ|, e^{−m}) + ε)
 * into h (rows of dv floats, stride ldh). Used to ask how well the state recalls a
 * key's value (φ = φ(k); the sparse cache, docs/design.md "Sparse cache"). */
void xd_mlstm_readout(float *h, int ldh, const xd_mlstm_state *st, int head, const float *phi,
                      int ldphi, int n, const xd_mlstm_cfg *cfg);

/* T steps from init (NULL: the zero state), resetting at every document
 * start t > 0; final (or NULL) receives the last state (may be init). */
int xd_mlstm_recurrent_forward(float *h, xd_mlstm_state *final, const xd_mlstm_in *in,
                               const xd_mlstm_state *init, int64_t T, const xd_mlstm_cfg *cfg);

#endif
