/* Kernel two-sample term against a bank (mmd.h). */
#include "mmd.h"

#include <math.h>
#include <stddef.h>

static double sq_dist(const float *x, const float *y, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) {
        double t = (double)x[i] - y[i];
        s += t * t;
    }
    return s;
}

/* sign · mean_j k(x, y_j); dx += scale · sign · mean_j ∂k(x, y_j)/∂x */
static double side(float *dx, const float *x, int d, const float *y, int n, const float *gamma,
                   int n_gamma, double sign, float scale) {
    if (n <= 0) return 0;
    double sum = 0;
    for (int j = 0; j < n; j++) {
        const float *yj = y + (size_t)j * d;
        double r2 = sq_dist(x, yj, d), k = 0, dk = 0; /* dk: Σ_s −2γ_s e^{−γ_s r²} */
        for (int s = 0; s < n_gamma; s++) {
            double e = exp(-(double)gamma[s] * r2);
            k += e;
            dk += -2.0 * gamma[s] * e;
        }
        sum += k;
        if (dx) {
            double c = scale * sign * dk / n;
            for (int i = 0; i < d; i++) dx[i] += (float)(c * ((double)x[i] - yj[i]));
        }
    }
    return sign * sum / n;
}

double xd_mmd_bank(float *dx, const float *x, int d, const float *same, int n_same,
                   const float *other, int n_other, const float *gamma, int n_gamma, float scale) {
    if (n_same <= 0 || n_other <= 0) return 0;
    return side(dx, x, d, same, n_same, gamma, n_gamma, 1.0, scale) +
           side(dx, x, d, other, n_other, gamma, n_gamma, -1.0, scale);
}

double xd_mmd_bank_linear(float *dx, const float *x, int d, const float *same, int n_same,
                          const float *other, int n_other, const float *w, float scale) {
    if (n_same <= 0 || n_other <= 0) return 0;
    double loss = 0;
    for (int i = 0; i < d; i++) {
        double ms = 0, mo = 0;
        for (int j = 0; j < n_same; j++) ms += same[(size_t)j * d + i];
        for (int j = 0; j < n_other; j++) mo += other[(size_t)j * d + i];
        ms /= n_same, mo /= n_other;
        double g = (double)w[i] * (ms - mo); /* ∂loss/∂x_i */
        loss += ((double)x[i] - 0.5 * (ms + mo)) * g;
        if (dx) dx[i] += (float)(scale * g);
    }
    return loss;
}

double xd_mean_sq_dist(const float *a, int n, int d) {
    if (n < 2) return 0;
    double s = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) s += sq_dist(a + (size_t)i * d, a + (size_t)j * d, d);
    return s / ((double)n * (n - 1) / 2);
}
