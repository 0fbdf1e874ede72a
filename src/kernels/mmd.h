/* A kernel two-sample term for removing an attribute from representations (the maximum
 * mean discrepancy, Gretton et al. 2012, with a sum of Gaussian kernels
 *   k(x, y) = Σ_s exp(−γ_s ‖x − y‖²) ),
 * estimated for one differentiable sample x against a bank of earlier, constant samples:
 *   loss(x) = mean_{a ∈ same} k(x, a) − mean_{b ∈ other} k(x, b)
 * where `same` holds earlier representations of x's own group and `other` those of the
 * other groups. Its gradient in x is, up to the factor 2/n_own, the gradient of the
 * estimate of MMD²(P_own, P_other) with respect to that one sample of P_own: minimising it
 * pulls x towards the other groups and spreads it within its own, so the two
 * distributions meet (MMD = 0 iff they are equal, for a characteristic kernel). */
#ifndef XD_MMD_H
#define XD_MMD_H

/* Returns loss(x) (0 when a bank side is empty); with dx non-NULL adds scale · ∂loss/∂x,
 *   ∂k(x, y)/∂x = Σ_s −2γ_s exp(−γ_s ‖x − y‖²) (x − y).
 * x [d]; same [n_same][d]; other [n_other][d]; gamma [n_gamma]. Sums in double. */
double xd_mmd_bank(float *dx, const float *x, int d, const float *same, int n_same,
                   const float *other, int n_other, const float *gamma, int n_gamma, float scale);

/* The linear-kernel form with a per-dimension scale, k(x, y) = Σ_i x_i·y_i·w_i (w: the
 * inverse variances, so that a difference is measured in standard deviations, as a linear
 * probe sees it): with μ_s, μ_o the means of `same` and `other`,
 *   loss(x) = (x − (μ_s + μ_o)/2) · W (μ_s − μ_o)
 * (its mean over the own group is half the squared standardised distance between the two
 * groups' means), ∂loss/∂x = W (μ_s − μ_o). Returns loss(x) (0 when a side is empty); dx
 * as xd_mmd_bank. */
double xd_mmd_bank_linear(float *dx, const float *x, int d, const float *same, int n_same,
                          const float *other, int n_other, const float *w, float scale);

/* Mean squared distance over the pairs of rows of a [n][d] (0 when n < 2): the bandwidth
 * scale the caller derives γ_s from (γ_s = m_s / mean, the "mean heuristic"). */
double xd_mean_sq_dist(const float *a, int n, int d);

#endif
