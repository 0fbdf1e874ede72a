/* The counterfactual invariance term (pair_dist.h). */
#include "pair_dist.h"

#include <stddef.h>

double xd_pair_sq(float *da, float *db, const float *a, const float *b, int n, int d, float scale) {
    double loss = 0.0, g = 2.0 * (double)scale / (double)d;
    for (int i = 0; i < n; i++) {
        const float *x = a + (size_t)i * d, *y = b + (size_t)i * d;
        double s = 0.0;
        for (int j = 0; j < d; j++) {
            double t = (double)x[j] - (double)y[j];
            s += t * t;
            if (da) da[(size_t)i * d + j] += (float)(g * t);
            if (db) db[(size_t)i * d + j] -= (float)(g * t);
        }
        loss += s;
    }
    return loss / (double)d;
}
