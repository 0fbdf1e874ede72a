/* The gated delta rule (Yang, Kautz & Hatamizadeh 2024, "Gated Delta Networks: Improving
 * Mamba2 with Delta Rule", eq. 10), an alternative memory for the student's recurrent
 * branch (docs/design.md, "Gated delta rule"). Per head, with φq, φk the feature-mapped
 * queries/keys, v the value and the gate pre-activations ĩ (write strength) and f̃ (decay):
 *
 *   q̂ = φq / ‖φq‖,  k̂ = φk / ‖φk‖      ‖x‖ = sqrt(Σ x² + 1e-6)
 *   α_t = σ(f̃_t),   β_t = σ(ĩ_t)      (vmath.h's xd_sigmoid)
 *   S_t = α_t·S_{t−1}·(I − β_t k̂_t k̂_tᵀ) + β_t·v_t k̂_tᵀ       (S: d_v × d_φ)
 *   h_t = S_t q̂_t
 *
 * S forgets by α like the mLSTM but, unlike the mLSTM's additive update, it first erases
 * what it stored under k̂ (the "delta": it writes v − α·S_{t−1}k̂, the error of its own
 * prediction), so a key written again replaces its old value instead of blurring it.
 * With ‖k̂‖ = 1 and β ≤ 1 the update is a contraction: the state stays bounded with no
 * stabiliser and no normaliser.
 *
 * The code keeps M = Sᵀ [d_φ][d_v] (the mLSTM's C layout) and computes, per token,
 *   u = Mᵀk̂,  r = β·(v − α·u),  M ← α·M + k̂ rᵀ,  h = Mᵀq̂.
 *
 * Inputs and gradients use the mLSTM's structs and layout (mlstm.h, LAYOUT): q, k
 * [T][H][dphi], v, h [T][H][dv], ig (ĩ), fg (f̃) [T][H], doc_start; cfg's H, dphi, dv and
 * chunk (cfg.scale and cfg.eps are not used). At a document start t > 0 the state resets
 * (S_{t−1} = 0). A state is H·dphi·dv floats; init/final as in the mLSTM (init NULL:
 * zero). Every head is computed by one thread in a fixed order: results do not depend on
 * the number of threads, and xd_delta_step gives the same bits as the forward.
 *
 * Backward (exact gradient of the function above, accumulated += into g's non-NULL
 * members, train_ops.h conventions): per token, from dM (∂loss/∂M_t, h's term added),
 *   dq̂ = M_t dh,  dr = dMᵀk̂,  dk̂ = dM r + M_{t−1} du,  du = −α·β·dr,
 *   dβ = dr·(v − α·u),  dv = β·dr,  dα = ⟨dM, M_{t−1}⟩ − β·dr·u,
 *   dM_{t−1} = α·dM + k̂ duᵀ,
 * then dĩ = dβ·β(1−β), df̃ = dα·α(1−α), dφ = (dx̂ − x̂(x̂·dx̂))/‖φ‖. The forward saves the
 * state entering every chunk of `chunk` tokens; the backward recomputes each chunk's
 * states from it (memory linear in T). */
#ifndef XD_DELTA_H
#define XD_DELTA_H

#include <stdint.h>

#include "mlstm.h"

/* Floats of the forward's cache: the state entering each chunk plus 1/‖φq‖ and 1/‖φk‖ of
 * every token and head: max(1, ⌈T/L⌉)·H·dphi·dv + 2·T·H. */
int64_t xd_delta_cache_floats(int64_t T, const xd_mlstm_cfg *cfg);

/* h [T][H][dv] over T ≥ 0 tokens from init (H·dphi·dv floats, or NULL: zero). final (or
 * NULL) receives the state after the last token and may be init itself. cache: the
 * xd_delta_cache_floats buffer, or NULL when no backward follows. Returns 0, or −1
 * (xd_last_error) when scratch memory cannot be had. */
int xd_delta_forward(float *h, float *cache, float *final, const xd_mlstm_in *in,
                     const float *init, int64_t T, const xd_mlstm_cfg *cfg);

/* Backward of xd_delta_forward with the same in, init-or-NULL (only whether it is NULL
 * matters), T, cfg and the cache it filled. dh [T][H][dv]; dfinal (or NULL = 0): ∂loss/∂
 * the final state. Accumulates into g's non-NULL members and dinit (or NULL). Returns 0,
 * or −1 when scratch memory cannot be had. */
int xd_delta_backward(const xd_mlstm_grads *g, float *dinit, const float *dh,
                      const float *dfinal, const float *cache, const xd_mlstm_in *in,
                      const float *init, int64_t T, const xd_mlstm_cfg *cfg);

/* One token, all heads (decoding): q, k [H][dphi], v [H][dv], ig, fg [H]; S [H][dphi][dv]
 * updated in place, h [H][dv] written. reset ≠ 0: a document starts here. Returns 0, or
 * −1 (xd_last_error) when a head wider than 512 values finds no scratch memory. */
int xd_delta_step(float *h, float *S, const float *q, const float *k, const float *v,
                  const float *ig, const float *fg, int reset, const xd_mlstm_cfg *cfg);

#endif
