/* Stage II distillation loss (docs/design.md, "Stage II"), fused with its gradient.
 *
 * Per token row r with student logits z = logits[r][0..V):
 *   p_S      = softmax(z) over the full vocabulary
 *   CE_r     = −log p_S(y),  y = targets[r]          (only if 0 <= y < V)
 *   p̂_T      = softmax of the teacher's top-k logits, renormalised over the
 *              slots j with 0 <= topk_ids[r][j] < V (the row's "teacher set" S;
 *              slots with other ids, e.g. −1, are padding and ignored)
 *   KL_r     = Σ_{j∈S} p̂_T(j) · (log p̂_T(j) − log p_S(id_j))   (only if S ≠ ∅)
 *   loss_r   = w_ce · CE_r + w_kl · KL_r   (a missing term counts 0)
 *
 * Gradient (Σ_{j∈S} p̂_T(j) = 1):
 *   ∂CE_r/∂z_i = p_S(i) − [i = y]
 *   ∂KL_r/∂z_i = p_S(i) − Σ_{j∈S, id_j = i} p̂_T(j)
 */
#ifndef XD_DISTILL_LOSS_H
#define XD_DISTILL_LOSS_H

#include <stdint.h>

/* Over n rows: returns Σ_r loss_r and, when non-NULL, *ce_sum = Σ_r CE_r and
 * *kl_sum = Σ_r KL_r (unweighted; over the rows that have the term).
 *   logits       [n][V] student logits
 *   targets      [n] next-token ids, or NULL (no CE at all); a row with
 *                target < 0 or >= V has no CE term
 *   topk_ids     [n][k] teacher ids, or NULL (no KL at all; k is then unused)
 *   topk_logits  [n][k] the teacher's logits of those ids (any order; finite)
 *   dlogits      [n][V] OVERWRITTEN with scale · ∂loss_r/∂z for every row (a
 *                row with neither term gets 0; a row with a target < 0 but a
 *                teacher set gets the KL part only), or NULL (loss only). It
 *                may alias logits (the logits are then overwritten).
 * Sums are in double; the exponentials over V are expf in fp32. Rows are
 * split into a fixed number of pieces, so the result does not depend on the
 * thread count. */
double xd_distill_loss(float *dlogits, const float *logits, const int32_t *targets,
                       const int32_t *topk_ids, const float *topk_logits, int n, int V, int k,
                       float w_ce, float w_kl, float scale, double *ce_sum, double *kl_sum);

#endif
