/* RMSNorm (Zhang & Sennrich 2019): y = x · rsqrt(mean(x²) + eps) · w. */
#include <math.h>

#include "kernels.h"

void xd_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
#pragma omp parallel for if (n > 16)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * dim;
        float *yi = y + (int64_t)i * dim;
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)xi[j] * xi[j];
        float r = (float)(1.0 / sqrt(ss / dim + eps));
        for (int j = 0; j < dim; j++) yi[j] = xi[j] * r * w[j];
    }
}
