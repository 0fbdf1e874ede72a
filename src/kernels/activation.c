/* SwiGLU (Shazeer 2020): silu(g) ⊙ u with silu(g) = g·σ(g); softmax. Both
 * use the vectorisable exp of vmath.h (the training ops use the same
 * expressions, so inference and training forwards agree bit for bit). */
#include "kernels.h"
#include "vmath.h"

void xd_swiglu(float *g, const float *u, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++) g[i] = g[i] * xd_sigmoid(g[i]) * u[i];
}

void xd_softmax(float *x, int n) {
    float mx = xd_max_of(x, n, x[0]);
    for (int i = 0; i < n; i++) x[i] = xd_exp_le0(x[i] - mx);
    float inv = (float)(1.0 / xd_sum_d(x, n));
    for (int i = 0; i < n; i++) x[i] *= inv;
}
