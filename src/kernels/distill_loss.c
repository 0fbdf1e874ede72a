/* Stage II loss: w_ce · CE + w_kl · KL over the teacher's top-k, fused with the
 * gradient (see distill_loss.h for the formulas).
 *
 * One row in two passes over V, so dlogits may alias logits:
 *   1. m = max z; everything read from z later (z_y and Σ p̂_j z_{id_j}) is
 *      read here, before z is overwritten.
 *   2. e_i = expf(z_i − m) into dz, Σ e in double; lse = m + log Σ e, then
 *      dz_i = c · e_i with c = scale · (w_ce [CE] + w_kl [KL]) / Σ e, and the
 *      one-hot / teacher parts subtracted at y and the ids of S.
 * With the teacher's log-normaliser lt = log Σ_S exp(t_j) and p̂_j = exp(t_j − lt):
 *   KL = Σ_S p̂_j (t_j − lt) − Σ_S p̂_j z_{id_j} + lse · Σ_S p̂_j
 * (log p̂_j is taken as t_j − lt, never log(p̂_j), so a p̂_j that underflows to
 * 0 contributes 0, not 0 · −inf). */
#include "distill_loss.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

double xd_distill_loss(float *dlogits, const float *logits, const int32_t *targets,
                       const int32_t *topk_ids, const float *topk_logits, int n, int V, int k,
                       float w_ce, float w_kl, float scale, double *ce_sum, double *kl_sum) {
    enum { NP = 64 }; /* fixed pieces: the sums do not depend on the thread count */
    double part_ce[NP], part_kl[NP], part_loss[NP];
    if (!topk_ids || !topk_logits) k = 0;
#pragma omp parallel for schedule(static) if (n > 1)
    for (int p = 0; p < NP; p++) {
        int64_t r0 = (int64_t)n * p / NP, r1 = (int64_t)n * (p + 1) / NP;
        double ace = 0, akl = 0, aloss = 0;
        for (int64_t r = r0; r < r1; r++) {
            const float *z = logits + r * V;
            float *dz = dlogits ? dlogits + r * V : NULL;
            int y = targets ? targets[r] : -1;
            int has_ce = y >= 0 && y < V;
            const int32_t *ti = k ? topk_ids + r * k : NULL;
            const float *tv = k ? topk_logits + r * k : NULL;
            /* teacher: max and log-normaliser over the valid slots */
            int has_kl = 0;
            double tmax = -INFINITY;
            for (int j = 0; j < k; j++)
                if (ti[j] >= 0 && ti[j] < V) {
                    has_kl = 1;
                    if (tv[j] > tmax) tmax = tv[j];
                }
            if (!has_ce && !has_kl) {
                if (dz) memset(dz, 0, (size_t)V * sizeof(float));
                continue;
            }
            double lt = 0, psum = 0, ent = 0, cross = 0; /* Σ p̂, Σ p̂ log p̂, Σ p̂ z */
            if (has_kl) {
                double s = 0;
                for (int j = 0; j < k; j++)
                    if (ti[j] >= 0 && ti[j] < V) s += exp((double)tv[j] - tmax);
                lt = tmax + log(s);
                for (int j = 0; j < k; j++)
                    if (ti[j] >= 0 && ti[j] < V) {
                        double lp = (double)tv[j] - lt, ph = exp(lp);
                        if (ph == 0) continue;
                        psum += ph;
                        ent += ph * lp;
                        cross += ph * (double)z[ti[j]];
                    }
            }
            /* pass 1: max and z_y */
            float m = z[0];
            for (int i = 1; i < V; i++) m = z[i] > m ? z[i] : m;
            double zy = has_ce ? (double)z[y] : 0;
            /* pass 2: exponentials */
            double sum = 0;
            if (dz)
                for (int i = 0; i < V; i++) {
                    float e = expf(z[i] - m);
                    dz[i] = e;
                    sum += e;
                }
            else
                for (int i = 0; i < V; i++) sum += expf(z[i] - m);
            double lse = (double)m + log(sum);
            double ce = has_ce ? lse - zy : 0;
            double kl = has_kl ? ent - cross + lse * psum : 0;
            ace += ce;
            akl += kl;
            aloss += (double)w_ce * ce + (double)w_kl * kl;
            if (!dz) continue;
            double wsum = (has_ce ? (double)w_ce : 0) + (has_kl ? (double)w_kl * psum : 0);
            float c = (float)((double)scale * wsum / sum);
            for (int i = 0; i < V; i++) dz[i] *= c;
            if (has_ce) dz[y] -= (float)((double)scale * w_ce);
            if (has_kl)
                for (int j = 0; j < k; j++)
                    if (ti[j] >= 0 && ti[j] < V)
                        dz[ti[j]] -= (float)((double)scale * w_kl * exp((double)tv[j] - lt));
        }
        part_ce[p] = ace;
        part_kl[p] = akl;
        part_loss[p] = aloss;
    }
    double ce = 0, kl = 0, loss = 0;
    for (int p = 0; p < NP; p++) {
        ce += part_ce[p];
        kl += part_kl[p];
        loss += part_loss[p];
    }
    if (ce_sum) *ce_sum = ce;
    if (kl_sum) *kl_sum = kl;
    return loss;
}
