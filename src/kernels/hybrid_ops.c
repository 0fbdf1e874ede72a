/* Small ops of the hybrid mixer (hybrid_ops.h): Hedgehog feature map, gate
 * soft-cap, branch mix; forward and backward.
 *
 * Determinism (results do not depend on the thread count, by construction):
 * the parallel loops give every output element to one job that computes it
 * in a fixed order; the row reductions run over the rows in order within one
 * job (dw_o, db_o) or over pieces of HH_RB rows whose partials are added in
 * piece order (dA, da); every sgemm is one piece's, called inside an active
 * OpenMP region (see the Hedgehog section for why that matters). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "hybrid_ops.h"

/* ---- reductions -------------------------------------------------------------------
 * Sums in double over NL independent lanes (lane l takes elements l, l+NL, …)
 * combined in a fixed tree: vectorisable without reassociating anything (the
 * order is the code's, whatever the vector width). */
enum { NL = 8 };

static double lanes_sum(const double *acc) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Σ a_i·b_i */
static inline double dot_fd(const float *a, const float *b, int n) {
    double acc[NL] = {0};
    int i = 0;
    for (; i + NL <= n; i += NL)
        for (int l = 0; l < NL; l++) acc[l] += (double)a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += (double)a[i] * b[i];
    return lanes_sum(acc);
}

/* Σ x_i */
static inline double sum_fd(const float *x, int n) {
    double acc[NL] = {0};
    int i = 0;
    for (; i + NL <= n; i += NL)
        for (int l = 0; l < NL; l++) acc[l] += x[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += x[i];
    return lanes_sum(acc);
}

/* ---- Hedgehog feature map --------------------------------------------------------
 * The rows are cut into pieces of HH_RB rows (the last one shorter): a
 * partition fixed by n alone. Every sgemm covers one piece of one map and is
 * called inside an active OpenMP region, where OpenBLAS's OpenMP build runs it
 * on the calling thread, so its bits depend on its operands and shape only.
 * (The regions have no if clause: with more than one thread allowed they are
 * active, unless OMP_DYNAMIC lets the runtime shrink them; with one thread
 * OpenBLAS runs on one thread anyway.) A top-level sgemm would not do:
 * OpenBLAS then splits it over the threads, and the split can change the
 * rounding (0.3.21: 1, 2 and 3 threads give different bits with the Haswell
 * and Zen kernels even for [700×32]·[32×32], and with every kernel for some
 * shapes). The reductions over rows (dA, da) keep one partial per piece and
 * add the partials in piece order. */

enum { HH_RB = 128, HH_CB = 512, HH_FEW = 4 }; /* rows per piece; elements per job adding
                                                 * partials; rows without sgemm */

/* row: z = u·A (from the sgemm) in row[0..hd); writes φ = [softmax(z + a);
 * softmax(−(z + a))] over row[0..2hd). Each half is e = expf(±z − max(±z))
 * (float), Σe in double, φ = (float)(e·(1/Σe)) in double. */
static void hh_softmax_row(float *row, const float *a, int hd) {
    float mx = -INFINITY, mn = INFINITY;
    for (int j = 0; j < hd; j++) {
        float z = a ? row[j] + a[j] : row[j];
        row[j] = z;
        mx = z > mx ? z : mx;
        mn = z < mn ? z : mn;
    }
    for (int j = 0; j < hd; j++) row[hd + j] = expf(mn - row[j]); /* max(−z) = −min z */
    for (int j = 0; j < hd; j++) row[j] = expf(row[j] - mx);
    const double ip = 1.0 / sum_fd(row, hd), in = 1.0 / sum_fd(row + hd, hd);
    for (int j = 0; j < hd; j++) row[j] = (float)(row[j] * ip);
    for (int j = 0; j < hd; j++) row[hd + j] = (float)(row[hd + j] * in);
}

void xd_hedgehog_forward(float *phi, const float *u, int ldu, const float *A, const float *a,
                         int n, int nmap, int nu, int hd) {
    if (n <= 0 || nmap <= 0 || nu <= 0 || hd <= 0) return;
    const int per = nmap / nu;
    const int ldp = 2 * hd * nmap;
    const int npiece = (n + HH_RB - 1) / HH_RB;
    const int64_t njob = (int64_t)nmap * npiece;
    /* no if clause: the sgemms must run inside an active region (see above) */
#pragma omp parallel for schedule(static)
    for (int64_t job = 0; job < njob; job++) {
        const int h = (int)(job / npiece), t0 = (int)(job % npiece) * HH_RB;
        const int m = n - t0 < HH_RB ? n - t0 : HH_RB;
        float *ph = phi + (int64_t)t0 * ldp + (int64_t)h * 2 * hd;
        /* z = u·A straight into the first half of the map's slot of phi; a few rows
         * (decoding) as sums of A's rows, cheaper than an sgemm call */
        const float *uh = u + (int64_t)t0 * ldu + (int64_t)(h / per) * hd;
        const float *Ah = A + (int64_t)h * hd * hd;
        if (m <= HH_FEW) {
            for (int t = 0; t < m; t++) {
                float *z = ph + (int64_t)t * ldp;
                const float *ut = uh + (int64_t)t * ldu;
                memset(z, 0, (size_t)hd * sizeof(float));
                for (int i = 0; i < hd; i++) {
                    const float ui = ut[i], *Ai = Ah + (int64_t)i * hd;
                    for (int j = 0; j < hd; j++) z[j] += ui * Ai[j];
                }
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, hd, 1.0f, uh, ldu, Ah,
                        hd, 0.0f, ph, ldp);
        }
        for (int t = 0; t < m; t++)
            hh_softmax_row(ph + (int64_t)t * ldp, a ? a + (int64_t)h * hd : NULL, hd);
    }
}

int xd_hedgehog_backward(float *du, float *dA, float *da, const float *dphi, const float *phi,
                         const float *u, int ldu, const float *A, int n, int nmap, int nu, int hd) {
    if (n <= 0 || nmap <= 0 || nu <= 0 || hd <= 0 || (!du && !dA && !da)) return 0;
    const int per = nmap / nu;
    const int64_t ldp = 2 * (int64_t)hd * nmap, hh = (int64_t)hd * hd;
    const int npiece = (n + HH_RB - 1) / HH_RB, nth = omp_get_max_threads();
    /* dz of one piece per thread; the per-piece partials of dA and da */
    float *dz = malloc((size_t)nth * HH_RB * hd * sizeof(float));
    float *pA = dA ? malloc((size_t)npiece * hh * sizeof(float)) : NULL;
    double *pa = da ? malloc((size_t)npiece * hd * sizeof(double)) : NULL;
    if (!dz || (dA && !pA) || (da && !pa)) {
        free(dz), free(pA), free(pa);
        return xd_err("Hedgehog backward: out of memory for scratch (n=%d, hd=%d)", n, hd);
    }
    /* jobs adding up the partials: HH_CB elements of dA or of da each */
    const int ncA = dA ? (int)((hh + HH_CB - 1) / HH_CB) : 0;
    const int nca = da ? (hd + HH_CB - 1) / HH_CB : 0;
#pragma omp parallel num_threads(nth)
    {
        float *z = dz + (size_t)omp_get_thread_num() * HH_RB * hd;
        for (int h = 0; h < nmap; h++) {
            const float *ug = u + (int64_t)(h / per) * hd;
            const float *Ah = A + (int64_t)h * hh;
#pragma omp for schedule(static)
            for (int p = 0; p < npiece; p++) {
                const int t0 = p * HH_RB, m = n - t0 < HH_RB ? n - t0 : HH_RB;
                /* dz = J₊ᵀdφ₊ − J₋ᵀdφ₋, softmax backward from the outputs:
                 * dz_j = φ+_j(dφ+_j − φ+·dφ+) − φ−_j(dφ−_j − φ−·dφ−) */
                for (int r = 0; r < m; r++) {
                    const float *f = phi + (t0 + r) * ldp + (int64_t)h * 2 * hd;
                    const float *d = dphi + (t0 + r) * ldp + (int64_t)h * 2 * hd;
                    const double ap = dot_fd(f, d, hd), an = dot_fd(f + hd, d + hd, hd);
                    float *zr = z + (int64_t)r * hd;
                    for (int j = 0; j < hd; j++)
                        zr[j] = (float)(f[j] * (d[j] - ap) - f[hd + j] * (d[hd + j] - an));
                }
                if (pa) { /* da's piece: Σ_rows dz in row order, in double */
                    double *pp = pa + (int64_t)p * hd;
                    for (int j = 0; j < hd; j++) pp[j] = 0;
                    for (int r = 0; r < m; r++)
                        for (int j = 0; j < hd; j++) pp[j] += z[(int64_t)r * hd + j];
                }
                if (pA) /* dA's piece: u_pᵀ·dz_p  ([hd×m]·[m×hd]) */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, hd, m, 1.0f,
                                ug + (int64_t)t0 * ldu, ldu, z, hd, 0.0f, pA + (int64_t)p * hh,
                                hd);
                if (du) /* du_p += dz_p·Aᵀ  ([m×hd]·[hd×hd]) */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, hd, hd, 1.0f, z, hd,
                                Ah, hd, 1.0f, du + (int64_t)t0 * ldu + (int64_t)(h / per) * hd,
                                ldu);
            } /* implied barrier: every piece of map h is done */
            /* dA[h] += Σ_p pA[p], da[h] += Σ_p pa[p]: every element summed in
             * double, in piece order; a job per HH_CB elements (the barrier at
             * the end keeps the next map off the partials) */
#pragma omp for schedule(static)
            for (int job = 0; job < ncA + nca; job++) {
                double acc[HH_CB];
                const int isA = job < ncA;
                const int64_t e0 = (int64_t)(isA ? job : job - ncA) * HH_CB, len = isA ? hh : hd;
                const int ne = (int)(len - e0 < HH_CB ? len - e0 : HH_CB);
                for (int e = 0; e < ne; e++) acc[e] = 0;
                if (isA)
                    for (int p = 0; p < npiece; p++) {
                        const float *src = pA + (int64_t)p * hh + e0;
                        for (int e = 0; e < ne; e++) acc[e] += src[e];
                    }
                else
                    for (int p = 0; p < npiece; p++) {
                        const double *src = pa + (int64_t)p * hd + e0;
                        for (int e = 0; e < ne; e++) acc[e] += src[e];
                    }
                float *dst = isA ? dA + (int64_t)h * hh + e0 : da + (int64_t)h * hd + e0;
                for (int e = 0; e < ne; e++) dst[e] += (float)acc[e];
            }
        }
    }
    free(dz), free(pA), free(pa);
    return 0;
}

/* ---- gate soft-cap ------------------------------------------------------------------ */

void xd_softcap_forward(float *y, const float *g, int64_t n, float c) {
    if (n <= 0) return;
    if (c <= 0) {
        if (y != g) memmove(y, g, (size_t)n * sizeof(float));
        return;
    }
    const double cd = c;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = (float)(cd * tanh(g[i] / cd));
}

void xd_softcap_backward(float *dg, const float *dy, const float *g, int64_t n, float c) {
    if (n <= 0 || !dg) return;
    if (c <= 0) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dg[i] += dy[i];
        return;
    }
    const double cd = c;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        double ch = cosh(g[i] / cd); /* 1 − tanh² = 1/cosh², no cancellation; inf → 0 */
        dg[i] += (float)(dy[i] / (ch * ch));
    }
}

/* ---- mix -------------------------------------------------------------------------------- */

/* s = w·[qh; kg; vg] + b in double */
static double mix_logit(const float *w, float b, const float *qh, const float *kg,
                        const float *vg, int hd) {
    return (double)b + (dot_fd(w, qh, hd) + dot_fd(w + hd, kg, hd) + dot_fd(w + 2 * hd, vg, hd));
}

/* ∂L/∂s = o(1−o)·Σ_d dout_d(hm_d − hs_d); exactly 0 when o is 0 or 1 (the dot
 * is then skipped, so a non-finite unused branch cannot leak in) */
static inline double mix_ds(float o, const float *dy, const float *m, const float *s, int hd) {
    double od = o, w = od * (1.0 - od);
    if (w == 0.0) return 0.0;
    double acc[NL] = {0};
    int d = 0;
    for (; d + NL <= hd; d += NL)
        for (int l = 0; l < NL; l++) acc[l] += (double)dy[d + l] * ((double)m[d + l] - s[d + l]);
    for (int l = 0; d < hd; d++, l++) acc[l] += (double)dy[d] * ((double)m[d] - s[d]);
    return w * lanes_sum(acc);
}

void xd_mix_forward(float *out, float *o, const float *hm, const float *hs, const float *q,
                    int ldq, const float *k, int ldk, const float *v, int ldv, const float *w_o,
                    const float *b_o, int n, int nh, int nkv, int hd) {
    if (n <= 0 || nh <= 0 || nkv <= 0 || hd <= 0) return;
    const int per = nh / nkv;
#pragma omp parallel for schedule(static) if ((int64_t)n * nh * hd > 16384)
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            int g = h / per;
            double s = mix_logit(w_o + (int64_t)h * 3 * hd, b_o[h],
                                 q + (int64_t)t * ldq + (int64_t)h * hd,
                                 k + (int64_t)t * ldk + (int64_t)g * hd,
                                 v + (int64_t)t * ldv + (int64_t)g * hd, hd);
            float ot = (float)(1.0 / (1.0 + exp(-s)));
            if (o) o[(int64_t)t * nh + h] = ot;
            int64_t off = ((int64_t)t * nh + h) * hd;
            const float *m = hm + off, *sw = hs + off;
            float *y = out + off;
            if (ot == 0.0f) { /* forced SWA: a bit-exact copy of hs */
                if (y != sw) memmove(y, sw, (size_t)hd * sizeof(float));
            } else if (ot == 1.0f) {
                if (y != m) memmove(y, m, (size_t)hd * sizeof(float));
            } else {
                float om = 1.0f - ot;
                for (int d = 0; d < hd; d++) y[d] = ot * m[d] + om * sw[d];
            }
        }
}

void xd_mix_exact_window(float *out, float *o, const float *hs, int B, int T, int nh, int hd,
                         int64_t pos0, const int32_t *doc_start, int64_t limit) {
    size_t row = (size_t)nh * hd;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + (size_t)t;
            int64_t pos = doc_start ? (int64_t)t - doc_start[i] : pos0 + t;
            if (pos >= limit) {
                if (!doc_start) break; /* positions only grow along a decoded run */
                continue;
            }
            if (out + i * row != hs + i * row) memcpy(out + i * row, hs + i * row, row * sizeof(float));
            if (o) memset(o + i * (size_t)nh, 0, (size_t)nh * sizeof(float));
        }
}

/* columns of w_o per job of the dw_o reduction (all of them for hd ≤ 256) */
enum { MIX_CB = 768 };

void xd_mix_backward(float *dhm, float *dhs, float *dq, float *dk, float *dv, float *dw_o,
                     float *db_o, const float *dout, const float *o, const float *hm,
                     const float *hs, const float *q, int ldq, const float *k, int ldk,
                     const float *v, int ldv, const float *w_o, int n, int nh, int nkv, int hd) {
    if (n <= 0 || nh <= 0 || nkv <= 0 || hd <= 0) return;
    const int per = nh / nkv;
    /* pass 1, per row: dhm, dhs, dq, dk, dv (row t of dk/dv gets its group's
     * heads in head order, within one job) */
    if (dhm || dhs || dq || dk || dv) {
#pragma omp parallel for schedule(static) if ((int64_t)n * nh * hd > 16384)
        for (int t = 0; t < n; t++)
            for (int h = 0; h < nh; h++) {
                int g = h / per;
                int64_t off = ((int64_t)t * nh + h) * hd;
                const float *dy = dout + off;
                float ot = o[(int64_t)t * nh + h], om = 1.0f - ot;
                if (dhm)
                    for (int d = 0; d < hd; d++) dhm[off + d] += ot * dy[d];
                if (dhs)
                    for (int d = 0; d < hd; d++) dhs[off + d] += om * dy[d];
                if (!dq && !dk && !dv) continue;
                double ds = mix_ds(ot, dy, hm + off, hs + off, hd);
                if (ds == 0.0) continue;
                const float *w = w_o + (int64_t)h * 3 * hd;
                if (dq) {
                    float *r = dq + (int64_t)t * ldq + (int64_t)h * hd;
                    for (int j = 0; j < hd; j++) r[j] += (float)(ds * w[j]);
                }
                if (dk) {
                    float *r = dk + (int64_t)t * ldk + (int64_t)g * hd;
                    for (int j = 0; j < hd; j++) r[j] += (float)(ds * w[hd + j]);
                }
                if (dv) {
                    float *r = dv + (int64_t)t * ldv + (int64_t)g * hd;
                    for (int j = 0; j < hd; j++) r[j] += (float)(ds * w[2 * hd + j]);
                }
            }
    }
    /* pass 2: dw_o, db_o, summed over the rows in order by one job per
     * (head, chunk of MIX_CB columns; one chunk for hd ≤ 256); ds is
     * recomputed (no scratch) */
    if (dw_o || db_o) {
        const int nch = dw_o ? (3 * hd + MIX_CB - 1) / MIX_CB : 1;
#pragma omp parallel for schedule(static) if ((int64_t)n * nh * hd > 16384)
        for (int job = 0; job < nh * nch; job++) {
            int h = job / nch, c = job % nch, g = h / per;
            int j0 = c * MIX_CB, j1 = j0 + MIX_CB < 3 * hd ? j0 + MIX_CB : 3 * hd;
            double acc[MIX_CB], accb = 0;
            for (int j = 0; j < MIX_CB; j++) acc[j] = 0;
            for (int t = 0; t < n; t++) {
                int64_t off = ((int64_t)t * nh + h) * hd;
                double ds = mix_ds(o[(int64_t)t * nh + h], dout + off, hm + off, hs + off, hd);
                if (ds == 0.0) continue;
                accb += ds;
                if (!dw_o) continue;
                const float *seg[3] = {q + (int64_t)t * ldq + (int64_t)h * hd,
                                       k + (int64_t)t * ldk + (int64_t)g * hd,
                                       v + (int64_t)t * ldv + (int64_t)g * hd};
                for (int sg = 0; sg < 3; sg++) {
                    int lo = j0 > sg * hd ? j0 : sg * hd;
                    int hi = j1 < (sg + 1) * hd ? j1 : (sg + 1) * hd;
                    const float *x = seg[sg];
                    for (int j = lo; j < hi; j++) acc[j - j0] += ds * x[j - sg * hd];
                }
            }
            if (dw_o)
                for (int j = j0; j < j1; j++) dw_o[(int64_t)h * 3 * hd + j] += (float)acc[j - j0];
            if (db_o && c == 0) db_o[h] += (float)accb;
        }
    }
}
