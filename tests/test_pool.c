/* Sequence pooling (src/kernels/pool.h; issue 15): hand-computed values for both modes
 * with padded rows, the backward against central differences of L = Σ w ⊙ pool(x) (linear,
 * so exact up to fp32 rounding: tolerance 1e-4), padding receiving no gradient, and a bad
 * length refused. */
#include <string.h>

#include "kernels/pool.h"
#include "test.h"
#include "xdistill.h"

enum { B = 2, T = 3, D = 2 };

static double loss(const float *x, const int32_t *len, const float *w, xd_pool_mode m) {
    float o[B * D];
    xd_pool_forward(o, x, len, B, T, D, m);
    double L = 0;
    for (int i = 0; i < B * D; i++) L += (double)w[i] * o[i];
    return L;
}

int main(void) {
    /* row 0: 3 tokens; row 1: 2 tokens and one padding position (999s) */
    float x[B * T * D] = {1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 999, 999};
    const int32_t len[B] = {3, 2};
    float o[B * D];
    CHECK(xd_pool_forward(o, x, len, B, T, D, XD_POOL_LAST) == 0 && o[0] == 5 && o[1] == 6 &&
              o[2] == 30 && o[3] == 40, "last: %g %g %g %g", o[0], o[1], o[2], o[3]);
    CHECK(xd_pool_forward(o, x, len, B, T, D, XD_POOL_MEAN) == 0 && o[0] == 3 && o[1] == 4 &&
              o[2] == 20 && o[3] == 30, "mean: %g %g %g %g", o[0], o[1], o[2], o[3]);
    const float w[B * D] = {0.5f, -1.0f, 2.0f, 0.25f};
    int bad = 0, checked = 0;
    for (int m = 0; m < 2; m++) {
        float dx[B * T * D];
        memset(dx, 0, sizeof dx);
        xd_pool_backward(dx, w, len, B, T, D, (xd_pool_mode)m);
        for (int i = 0; i < B * T * D; i++) {
            float keep = x[i];
            x[i] = keep + 0.5f;
            double lp = loss(x, len, w, (xd_pool_mode)m);
            x[i] = keep - 0.5f;
            double lm = loss(x, len, w, (xd_pool_mode)m);
            x[i] = keep;
            double fd = (lp - lm) / 1.0;
            bad += fabs(fd - dx[i]) > 1e-4 * (1 + fabs(fd));
            checked++;
        }
        CHECK(dx[10] == 0 && dx[11] == 0, "padding got a gradient (mode %d)", m);
    }
    CHECK(bad == 0, "%d of %d coordinates disagree with central differences", bad, checked);
    const int32_t badlen[B] = {3, 0};
    CHECK(xd_pool_forward(o, x, badlen, B, T, D, XD_POOL_MEAN) < 0 &&
              strstr(xd_last_error(), "row 1"), "length 0: %s", xd_last_error());
    printf("pooling: last and mean by hand, %d coordinates vs central differences\n", checked);
    return test_summary("test_pool");
}
