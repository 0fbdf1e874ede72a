/* The math of DiffPruning (Guo et al. 2021; docs/design.md, "DiffPruning (mask math)"): a
 * fine-tuning diff δ = z ⊙ w with z a hard-concrete mask (Louizos et al. 2018, with
 * temperature 1 and stretch (l, r) = (−1.5, 1.5)), its expected-L0 penalty, the
 * gradient-reversal layer of the adversarial attribute diffs, and magnitude pruning to an
 * exact share of non-zeros. llm.c style pairs: backwards accumulate (+=). */
#ifndef XD_HARD_CONCRETE_H
#define XD_HARD_CONCRETE_H

#include <stdint.h>

/* Uniforms are drawn in [XD_HC_EPS, 1 − XD_HC_EPS] so that log u and log(1 − u) stay finite. */
#define XD_HC_EPS 1e-6

/* Training-time sample, per element i:
 *   s = σ(log u − log(1−u) + log_α),  s̄ = s·(r − l) + l,  z = clamp(s̄, 0, 1).
 * u [n] given (xd_hc_uniforms; it may be the same array as s); writes z and the saved s. */
void xd_hc_sample_forward(float *z, float *s, const float *log_alpha, const float *u, int64_t n,
                          float l, float r);
/* dlog_α += dz · (r − l)·s·(1 − s) where the clamp passes the gradient (0 <= s̄ <= 1,
 * both ends included, as torch.clamp's backward), else 0. */
void xd_hc_sample_backward(float *dlog_alpha, const float *dz, const float *s, int64_t n, float l,
                           float r);
/* The eval-time (deterministic) mask: z = clamp(σ(log_α)·(r − l) + l, 0, 1). */
void xd_hc_eval_mask(float *z, const float *log_alpha, int64_t n, float l, float r);
/* Expected L0 = Σ_i σ(log_α_i − log(−l / r)) (the probability that z_i ≠ 0), summed in
 * double (blocks of 65536 elements, their sums added in order: the same value for any
 * thread count); the backward adds scale · σ'(·) to dlog_alpha (NULL: forward only). */
double xd_hc_expected_l0(const float *log_alpha, int64_t n, float l, float r, float *dlog_alpha,
                         float scale);
/* n uniforms in [XD_HC_EPS, 1 − XD_HC_EPS] from core/rng.h's generator seeded with seed and
 * advanced by `stream` draws first (so a resumed run draws the same numbers). */
void xd_hc_uniforms(float *u, int64_t n, uint64_t seed, uint64_t stream);

/* Gradient reversal (Ganin & Lempitsky 2015): forward the identity, backward dx += −λ·dy. */
void xd_grad_reverse_backward(float *dx, const float *dy, int64_t n, float lambda);

/* Magnitude pruning: keep[i] = 1 for exactly k = round(share · n) entries (share in (0, 1];
 * at least one), those of largest |w| — ties broken by the lower index — else 0. Returns k,
 * or -1 with an error for a share outside (0, 1] or n < 1. */
int64_t xd_magnitude_prune(uint8_t *keep, const float *w, int64_t n, double share);

#endif
