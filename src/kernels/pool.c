/* Sequence pooling (pool.h). */
#include "pool.h"

#include <stddef.h>

#include "core/error.h"

int xd_pool_forward(float *out, const float *x, const int32_t *len, int B, int T, int d,
                    xd_pool_mode mode) {
    for (int b = 0; b < B; b++)
        if (len[b] < 1 || len[b] > T)
            return xd_err("pooling: row %d has %d tokens; expected 1 .. %d", b, len[b], T);
    for (int b = 0; b < B; b++) {
        const float *row = x + (size_t)b * T * d;
        float *o = out + (size_t)b * d;
        if (mode == XD_POOL_LAST) {
            const float *src = row + (size_t)(len[b] - 1) * d;
            for (int j = 0; j < d; j++) o[j] = src[j];
            continue;
        }
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int t = 0; t < len[b]; t++) s += row[(size_t)t * d + j];
            o[j] = (float)(s / len[b]);
        }
    }
    return 0;
}

void xd_pool_backward(float *dx, const float *dout, const int32_t *len, int B, int T, int d,
                      xd_pool_mode mode) {
    for (int b = 0; b < B; b++) {
        float *row = dx + (size_t)b * T * d;
        const float *g = dout + (size_t)b * d;
        if (mode == XD_POOL_LAST) {
            float *dst = row + (size_t)(len[b] - 1) * d;
            for (int j = 0; j < d; j++) dst[j] += g[j];
            continue;
        }
        float inv = 1.0f / (float)len[b];
        for (int t = 0; t < len[b]; t++)
            for (int j = 0; j < d; j++) row[(size_t)t * d + j] += g[j] * inv;
    }
}
