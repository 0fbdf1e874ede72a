/* Linear layers on OpenBLAS. */
#include <cblas.h>
#include <string.h>

#include "kernels.h"

void xd_linear(float *y, const float *x, const float *W, const float *b, int n, int in, int out) {
    if (n == 1) {
        if (b) memcpy(y, b, (size_t)out * sizeof(float));
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, x, 1, b ? 1.0f : 0.0f, y, 1);
        return;
    }
    if (b)
        for (int i = 0; i < n; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof(float));
    if (xd_bf16_active()) {
        if (!xd_bf16_linear(y, x, W, b != NULL, n, in, out)) return;
        if (b) /* y may be part-written: start the fp32 product afresh */
            for (int i = 0; i < n; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in,
                b ? 1.0f : 0.0f, y, out);
}
