/* Fairness metrics (fairness.h). */
#include "fairness.h"

#include <math.h>
#include <stdlib.h>

static int at(const int *idx, int k) { return idx ? idx[k] : k; }

double xd_accuracy(const int32_t *pred, const int32_t *y, const int *idx, int n) {
    int64_t ok = 0;
    for (int k = 0; k < n; k++) ok += pred[at(idx, k)] == y[at(idx, k)];
    return n ? (double)ok / n : 0.0;
}

double xd_balanced_accuracy(const int32_t *pred, const int32_t *y, int K, const int *idx, int n) {
    int64_t *hit = calloc((size_t)K * 2, sizeof *hit);
    if (!hit) return NAN;
    for (int k = 0; k < n; k++) {
        int i = at(idx, k);
        hit[2 * y[i]]++;
        hit[2 * y[i] + 1] += pred[i] == y[i];
    }
    double s = 0;
    int present = 0;
    for (int c = 0; c < K; c++)
        if (hit[2 * c]) {
            s += (double)hit[2 * c + 1] / (double)hit[2 * c];
            present++;
        }
    free(hit);
    return present ? s / present : 0.0;
}

double xd_tpr_gap_rms(const int32_t *pred, const int32_t *y, int C, const int32_t *a, int A,
                      const int *idx, int n) {
    /* cnt[y][a][0]: examples of class y with value a; [1]: of those, predicted y */
    int64_t *cnt = calloc((size_t)C * A * 2, sizeof *cnt);
    if (!cnt) return NAN;
    for (int k = 0; k < n; k++) {
        int i = at(idx, k);
        int64_t *c = cnt + ((size_t)y[i] * A + a[i]) * 2;
        c[0]++;
        c[1] += pred[i] == y[i];
    }
    double ss = 0;
    int classes = 0;
    for (int c = 0; c < C; c++) {
        double lo = 2, hi = -1;
        int groups = 0;
        for (int v = 0; v < A; v++) {
            const int64_t *q = cnt + ((size_t)c * A + v) * 2;
            if (!q[0]) continue;
            double tpr = (double)q[1] / (double)q[0];
            if (tpr < lo) lo = tpr;
            if (tpr > hi) hi = tpr;
            groups++;
        }
        if (groups < 2) continue;
        ss += (hi - lo) * (hi - lo);
        classes++;
    }
    free(cnt);
    return classes ? sqrt(ss / classes) : 0.0;
}

int xd_label_implied(const int32_t *ref_y, const int32_t *ref_a, int m, int C, int A,
                     const int32_t *y, int n, int32_t *pred) {
    int64_t *cnt = calloc((size_t)C * (size_t)A, sizeof *cnt);
    int32_t *best = malloc((size_t)C * sizeof *best);
    if (!cnt || !best) {
        free(cnt);
        free(best);
        return -1;
    }
    for (int i = 0; i < m; i++)
        if (ref_y[i] >= 0 && ref_y[i] < C && ref_a[i] >= 0 && ref_a[i] < A)
            cnt[(size_t)ref_y[i] * A + ref_a[i]]++;
    for (int c = 0; c < C; c++) {
        best[c] = 0;
        for (int a = 1; a < A; a++)
            if (cnt[(size_t)c * A + a] > cnt[(size_t)c * A + best[c]]) best[c] = a;
    }
    for (int i = 0; i < n; i++) pred[i] = y[i] >= 0 && y[i] < C ? best[y[i]] : 0;
    free(cnt);
    free(best);
    return 0;
}
