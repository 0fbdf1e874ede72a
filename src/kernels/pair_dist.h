/* The counterfactual invariance term between paired representations (Garg et al. 2019,
 * "Counterfactual Fairness in Text Classification through Robustness", counterfactual
 * logit pairing; here on the pooled representation a post-hoc attacker reads): each row a_i
 * (an example) and b_i (the same text with a protected attribute's cues swapped) should
 * coincide, so the representation cannot depend on those cues. */
#ifndef XD_PAIR_DIST_H
#define XD_PAIR_DIST_H

/* Over n pairs of rows of width d:
 *   loss = Σ_i (1/d)·‖a_i − b_i‖²,   ∂loss/∂a_i = (2/d)·(a_i − b_i) = −∂loss/∂b_i;
 * returns loss and adds scale · the gradients into da and db when they are non-NULL (sums
 * in double). */
double xd_pair_sq(float *da, float *db, const float *a, const float *b, int n, int d, float scale);

#endif
