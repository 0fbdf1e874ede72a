/* Rotary position embedding (Su et al. 2021) in the HF "rotate_half" layout:
 * for i < hd/2, (x_i, x_{i+hd/2}) is rotated by angle pos·inv_freq_i. */
#include <math.h>

#include "kernels.h"

void xd_rope(float *x, int n, int n_heads, int hd, int stride, int64_t pos0,
             const float *inv_freq) {
    int half = hd / 2;
#pragma omp parallel for if (n > 16)
    for (int t = 0; t < n; t++) {
        float c[512], s[512];
        for (int i = 0; i < half; i++) {
            /* the angle in float32, as HF computes it */
            float a = (float)(pos0 + t) * inv_freq[i];
            c[i] = cosf(a);
            s[i] = sinf(a);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (int64_t)t * stride + (int64_t)h * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}
