/* Masked causal GQA attention for training (forward and backward).
 *
 * Mask: key s is visible to query t iff
 *     d = doc_start[t] <= s <= t  and  (s − d < sinks  or  t − s < window)
 * (window <= 0: plain causal within the document).
 *
 * Work is organised in blocks of QB query rows of one head. For a block only
 * the key columns some row of it can see are computed: they form at most a
 * few column spans (causal → nothing right of the block's last row; a window
 * → only the last `window` columns plus the document's sinks; a document
 * boundary → nothing left of the document). Spans closer than GAP columns
 * are merged so that each sgemm stays reasonably large. Entries inside a
 * span that the mask hides are computed and then zeroed (forward) or carry
 * P = 0 and so contribute nothing (backward).
 *
 * Forward, jobs (head h, row block), in parallel:
 *   S = scale · Q_blk · K_spanᵀ         (sgemm, written straight into probs)
 *   P = softmax over the visible entries of each row, 0 elsewhere
 *   O_blk = Σ_span P_span · V_span       (sgemm)
 * Backward, for head h with kv head g = h / (nh/nkv) and P the saved probs:
 *   dV_g += Pᵀ · dO
 *   dP    = dO · V_gᵀ
 *   dS    = P ⊙ (dP − D),  D_t = rowsum(dP ⊙ P)_t    (softmax backward)
 *   dQ   += scale · dS · K_g
 *   dK_g += scale · dSᵀ · Q
 * in two passes so that every output has exactly one writer:
 *   pass 1, jobs (h, query-row block): dP, D (kept: nh·T floats), dS, dQ;
 *   pass 2, jobs (g, key-column block): for each query head of g, over the
 *     rows below the block, dV, then dP again, dS (with D), dK.
 * dP is computed twice (5 sgemms instead of 4), but there are nh·T/64 and
 * nkv·T/cw independent jobs instead of nh, no per-head dK/dV buffers, and
 * pass 2's sgemms reduce over the long row dimension. Measured on 16 Xeon
 * cores this beat a one-pass per-head version everywhere (T=512, nh=9: 3.3
 * vs 6.0 ms; T=2048, nh=32, hd=128: 311 vs 333 ms) and tied it on 2 cores.
 * Each job calls sgemms whose shapes depend on T, the mask and hd only,
 * inside an active OpenMP region (the regions have no if clause), where
 * OpenBLAS's OpenMP build runs them on the calling thread (a top-level sgemm
 * split over the threads may round differently: hybrid_ops.c). Every element
 * is summed in a fixed order, so the results do not depend on the number of
 * threads or on scheduling (only the plain-loop fallback, taken when the
 * per-thread scratch cannot be had, rounds differently). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "train_ops.h"
#include "vmath.h"

enum { QB = 64, GAP = 16, BAL_THREADS = 16 };

typedef struct {
    int lo, hi; /* columns [lo, hi) */
} span;

static inline int doc_of(const int32_t *doc_start, int t) {
    int d = doc_start ? doc_start[t] : 0;
    return d < 0 ? 0 : d;
}

/* Sort spans by lo and merge those that overlap or lie within GAP columns. */
static int merge_spans(span *sp, int n) {
    for (int i = 1; i < n; i++) {
        span x = sp[i];
        int j = i - 1;
        while (j >= 0 && sp[j].lo > x.lo) {
            sp[j + 1] = sp[j];
            j--;
        }
        sp[j + 1] = x;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (sp[i].hi <= sp[i].lo) continue;
        if (k > 0 && sp[i].lo <= sp[k - 1].hi + GAP) {
            if (sp[i].hi > sp[k - 1].hi) sp[k - 1].hi = sp[i].hi;
        } else sp[k++] = sp[i];
    }
    return k;
}

void xd_attn_train_forward(float *out, float *probs, const float *q, const float *k,
                           const float *v, int T, int nh, int nkv, int hd,
                           const int32_t *doc_start, int window, int sinks) {
    if (T <= 0) return;
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    int nblk = (T + QB - 1) / QB;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(dynamic)
    for (int job = 0; job < nh * nblk; job++) {
        int h = job / nblk, b = nblk - 1 - job % nblk; /* the longest blocks first */
        int i0 = b * QB, m = T - i0 < QB ? T - i0 : QB, g = h / group;
        /* the columns each row can see: one or two intervals per row */
        span sp[2 * QB];
        int ns = 0;
        for (int r = 0; r < m; r++) {
            int t = i0 + r, d = doc_of(doc_start, t);
            if (d > t) continue;
            if (window <= 0) {
                sp[ns++] = (span){d, t + 1};
            } else {
                if (sinks > 0) sp[ns++] = (span){d, d + sinks < t + 1 ? d + sinks : t + 1};
                sp[ns++] = (span){t - window + 1 > d ? t - window + 1 : d, t + 1};
            }
        }
        ns = merge_spans(sp, ns);

        const float *Q = q + (int64_t)i0 * qd + (int64_t)h * hd;
        const float *K = k + (int64_t)g * hd, *V = v + (int64_t)g * hd;
        float *P = probs + ((int64_t)h * T + i0) * T;
        float *O = out + (int64_t)i0 * qd + (int64_t)h * hd;
        for (int j = 0; j < ns; j++) /* S = scale·Q·Kᵀ on the span */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, sp[j].hi - sp[j].lo, hd,
                        scale, Q, qd, K + (int64_t)sp[j].lo * kvd, kvd, 0.0f, P + sp[j].lo, T);
        for (int r = 0; r < m; r++) {
            int t = i0 + r, d = doc_of(doc_start, t);
            float *row = P + (int64_t)r * T;
            if (d > t) { /* nothing visible (invalid doc_start): a zero row */
                memset(row, 0, (size_t)T * sizeof(float));
                continue;
            }
            /* visible columns: [d, lo1) (all, or the sinks) ∪ [lo2, t] (the window) */
            int lo1 = t + 1, lo2 = t + 1;
            if (window > 0) {
                lo1 = d + (sinks > 0 ? sinks : 0) < t + 1 ? d + (sinks > 0 ? sinks : 0) : t + 1;
                lo2 = t - window + 1 > lo1 ? t - window + 1 : lo1;
            }
            int a[2] = {d, lo2}, e[2] = {lo1, t + 1};
            float mx = -INFINITY, sum = 0;
            for (int j = 0; j < 2; j++) mx = xd_max_of(row + a[j], e[j] - a[j], mx);
            for (int j = 0; j < 2; j++) {
                for (int s = a[j]; s < e[j]; s++) row[s] = xd_exp_le0(row[s] - mx);
#pragma omp simd reduction(+ : sum)
                for (int s = a[j]; s < e[j]; s++) sum += row[s];
            }
            float inv = 1.0f / sum;
            for (int j = 0; j < 2; j++)
                for (int s = a[j]; s < e[j]; s++) row[s] *= inv;
            memset(row, 0, (size_t)d * sizeof(float));
            memset(row + lo1, 0, (size_t)(lo2 - lo1) * sizeof(float));
            memset(row + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
        }
        if (ns == 0)
            for (int r = 0; r < m; r++) memset(O + (int64_t)r * qd, 0, (size_t)hd * sizeof(float));
        for (int j = 0; j < ns; j++) /* O = P·V, summed over the spans */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, sp[j].hi - sp[j].lo,
                        1.0f, P + sp[j].lo, T, V + (int64_t)sp[j].lo * kvd, kvd,
                        j ? 1.0f : 0.0f, O, qd);
    }
}

/* Fallback when scratch memory cannot be had: the same math with plain loops,
 * one head at a time, accumulating straight into dq/dk/dv (no buffers).
 * External (not in train_ops.h) so that the tests can check it too. */
void xd_attn_train_backward_loops(float *dq, float *dk, float *dv, const float *dout,
                                  const float *probs, const float *q, const float *k,
                                  const float *v, int T, int nh, int nkv, int hd);
void xd_attn_train_backward_loops(float *dq, float *dk, float *dv, const float *dout,
                                  const float *probs, const float *q, const float *k,
                                  const float *v, int T, int nh, int nkv, int hd) {
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < nh; h++) {
        int g = h / group;
        for (int t = 0; t < T; t++) {
            const float *P = probs + ((int64_t)h * T + t) * T;
            const float *dO = dout + (int64_t)t * qd + (int64_t)h * hd;
            const float *Qt = q + (int64_t)t * qd + (int64_t)h * hd;
            double D = 0; /* rowsum(dP ⊙ P) */
            for (int s = 0; s <= t; s++) {
                if (P[s] == 0) continue;
                const float *Vs = v + (int64_t)s * kvd + (int64_t)g * hd;
                float dp = 0;
                for (int i = 0; i < hd; i++) dp += dO[i] * Vs[i];
                D += (double)dp * P[s];
            }
            for (int s = 0; s <= t; s++) {
                if (P[s] == 0) continue;
                const float *Ks = k + (int64_t)s * kvd + (int64_t)g * hd;
                const float *Vs = v + (int64_t)s * kvd + (int64_t)g * hd;
                if (dv)
                    for (int i = 0; i < hd; i++) dv[(int64_t)s * kvd + g * hd + i] += P[s] * dO[i];
                float dp = 0;
                for (int i = 0; i < hd; i++) dp += dO[i] * Vs[i];
                float ds = P[s] * (dp - (float)D) * scale;
                if (dq)
                    for (int i = 0; i < hd; i++) dq[(int64_t)t * qd + h * hd + i] += ds * Ks[i];
                if (dk)
                    for (int i = 0; i < hd; i++) dk[(int64_t)s * kvd + g * hd + i] += ds * Qt[i];
            }
        }
    }
}

/* ---- backward ---------------------------------------------------------------- */

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *probs, *q, *k, *v;
    int T, nh, nkv, hd, qd, kvd, group;
    float scale;
} bwd_args;

/* per-thread scratch: a block of dP/dS (≤ QB·T floats), flags (T), spans */
typedef struct {
    float *S;
    unsigned char *flag;
    span *sp;
} bwd_scratch;

/* Runs of set flags in [0, n), merged across gaps of ≤ GAP. */
static int flag_spans(const unsigned char *flag, int n, span *sp) {
    int ns = 0;
    for (int s = 0; s < n;) {
        if (!flag[s]) { s++; continue; }
        int e = s + 1;
        while (e < n && flag[e]) e++;
        if (ns > 0 && s <= sp[ns - 1].hi + GAP) sp[ns - 1].hi = e;
        else sp[ns++] = (span){s, e};
        s = e;
    }
    return ns;
}

/* Pass 1, query-row block b of head h: dP = dO·Vᵀ, D_t = rowsum(dP ⊙ P)
 * (stored in Dh[t] when Dh is given), dS = P ⊙ (dP − D), dQ += scale·dS·K. */
static void bwd_row_block(const bwd_args *a, const bwd_scratch *w, int h, int b, float *Dh) {
    int T = a->T, hd = a->hd, qd = a->qd, kvd = a->kvd, g = h / a->group;
    int i0 = b * QB, m = T - i0 < QB ? T - i0 : QB, hi = i0 + m;
    const float *P = a->probs + ((int64_t)h * T + i0) * T;
    const float *K = a->k + (int64_t)g * hd, *V = a->v + (int64_t)g * hd;
    const float *dO = a->dout + (int64_t)i0 * qd + (int64_t)h * hd;
    float *S = w->S;
    span *sp = w->sp;
    /* the columns with a nonzero probability in some row (all have s <= t) */
    memset(w->flag, 0, (size_t)hi);
    for (int r = 0; r < m; r++) {
        const float *row = P + (int64_t)r * T;
        for (int s = 0; s <= i0 + r; s++) w->flag[s] |= row[s] != 0;
    }
    int ns = flag_spans(w->flag, hi, sp);
    if (ns == 0) { /* rows with nothing visible */
        if (Dh)
            for (int r = 0; r < m; r++) Dh[i0 + r] = 0;
        return;
    }
    for (int j = 0; j < ns; j++) /* dP = dO·Vᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, sp[j].hi - sp[j].lo, hd, 1.0f,
                    dO, qd, V + (int64_t)sp[j].lo * kvd, kvd, 0.0f, S + sp[j].lo, T);
    for (int r = 0; r < m; r++) { /* dS = P ⊙ (dP − rowsum(dP ⊙ P)) */
        const float *pr = P + (int64_t)r * T;
        float *sr = S + (int64_t)r * T;
        double D = 0;
        for (int j = 0; j < ns; j++) {
#pragma omp simd reduction(+ : D)
            for (int s = sp[j].lo; s < sp[j].hi; s++) D += (double)pr[s] * sr[s];
        }
        float Df = (float)D;
        if (Dh) Dh[i0 + r] = Df;
        if (a->dq)
            for (int j = 0; j < ns; j++)
                for (int s = sp[j].lo; s < sp[j].hi; s++) sr[s] = pr[s] * (sr[s] - Df);
    }
    if (a->dq) /* dQ += scale·dS·K */
        for (int j = 0; j < ns; j++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, sp[j].hi - sp[j].lo,
                        a->scale, S + sp[j].lo, T, K + (int64_t)sp[j].lo * kvd, kvd, 1.0f,
                        a->dq + (int64_t)i0 * qd + (int64_t)h * hd, qd);
}

/* Pass 2, key columns [c0, c0+cw) of kv head g: for each query head h of
 * the group, over the rows t >= c0 with a nonzero probability in these
 * columns (merged into row spans),
 *   dV[c0:] += P[:, c0:]ᵀ · dO
 *   dS = P[:, c0:] ⊙ (dO·V[c0:]ᵀ − D_t),  dK[c0:] += scale · dSᵀ · Q.
 * The job owns kv rows [c0, c0+cw) and writes them directly. */
static void bwd_col_block(const bwd_args *a, const bwd_scratch *w, int g, int c0, int cw,
                          const float *D) {
    int T = a->T, hd = a->hd, qd = a->qd, kvd = a->kvd;
    int wc = T - c0 < cw ? T - c0 : cw, nr = T - c0;
    const float *V = a->v + (int64_t)c0 * kvd + (int64_t)g * hd;
    float *dK = a->dk ? a->dk + (int64_t)c0 * kvd + (int64_t)g * hd : NULL;
    float *dV = a->dv ? a->dv + (int64_t)c0 * kvd + (int64_t)g * hd : NULL;
    span *sp = w->sp;
    for (int h = g * a->group; h < (g + 1) * a->group; h++) {
        const float *P = a->probs + ((int64_t)h * T + c0) * T + c0; /* row c0, column c0 */
        for (int r = 0; r < nr; r++) {
            const float *row = P + (int64_t)r * T;
            unsigned char f = 0;
            for (int s = 0; s < wc; s++) f |= row[s] != 0;
            w->flag[r] = f;
        }
        int ns = flag_spans(w->flag, nr, sp);
        for (int j = 0; j < ns; j++) {
            int r0 = sp[j].lo, m = sp[j].hi - sp[j].lo;
            const float *Pj = P + (int64_t)r0 * T;
            const float *dO = a->dout + (int64_t)(c0 + r0) * qd + (int64_t)h * hd;
            const float *Q = a->q + (int64_t)(c0 + r0) * qd + (int64_t)h * hd;
            if (dV) /* dV += Pᵀ·dO */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, wc, hd, m, 1.0f, Pj, T, dO,
                            qd, 1.0f, dV, kvd);
            if (!dK) continue;
            float *S = w->S; /* m × wc: dP, then dS */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, wc, hd, 1.0f, dO, qd, V, kvd,
                        0.0f, S, wc);
            for (int r = 0; r < m; r++) {
                const float *pr = Pj + (int64_t)r * T;
                float *sr = S + (int64_t)r * wc, Dt = D[(int64_t)h * T + c0 + r0 + r];
                for (int s = 0; s < wc; s++) sr[s] = pr[s] * (sr[s] - Dt);
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, wc, hd, m, a->scale, S, wc, Q,
                        qd, 1.0f, dK, kvd);
        }
    }
}

void xd_attn_train_backward(float *dq, float *dk, float *dv, const float *dout,
                            const float *probs, const float *q, const float *k, const float *v,
                            int T, int nh, int nkv, int hd) {
    if (T <= 0 || (!dq && !dk && !dv)) return;
    bwd_args a = {dq, dk, dv, dout, probs, q, k, v, T, nh, nkv, hd, nh * hd, nkv * hd, nh / nkv,
                  1.0f / sqrtf((float)hd)};
    int nblk = (T + QB - 1) / QB, nth = omp_get_max_threads();
    /* pass 2 column width: its triangular jobs (the first has all T rows)
     * balance when their total, ≈ nkv·T/(2·cw) longest jobs, covers the
     * threads. Sized for up to BAL_THREADS threads rather than for the
     * actual count, so that the results do not depend on the thread count. */
    int cw = QB;
    while (cw > 16 && (int64_t)nkv * T < (int64_t)2 * cw * BAL_THREADS) cw /= 2;
    int ncb = (T + cw - 1) / cw;

    /* per thread: S (QB·T floats), flags (T bytes), spans (≤ T/2 + 1) */
    size_t nspan = (size_t)T / 2 + 2, sbytes = (size_t)QB * T * sizeof(float);
    size_t fbytes = ((size_t)T + 7) / 8 * 8;
    size_t per = (sbytes + fbytes + nspan * sizeof(span) + 63) & ~(size_t)63;
    char *scratch = malloc((size_t)nth * per);
    float *D = dk ? malloc((size_t)nh * T * sizeof(float)) : NULL;
    if (!scratch || (dk && !D)) {
        free(scratch), free(D);
        xd_attn_train_backward_loops(dq, dk, dv, dout, probs, q, k, v, T, nh, nkv, hd);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        char *mine = scratch + (size_t)omp_get_thread_num() * per;
        bwd_scratch w = {(float *)mine, (unsigned char *)(mine + sbytes),
                         (span *)(mine + sbytes + fbytes)};
        if (dq || dk) { /* pass 1: query-row blocks → dQ, and D for pass 2 */
#pragma omp for schedule(dynamic, 1)
            for (int job = 0; job < nh * nblk; job++) {
                int h = job / nblk, b = nblk - 1 - job % nblk; /* longest first */
                bwd_row_block(&a, &w, h, b, D ? D + (int64_t)h * T : NULL);
            }
        } /* (the implied barrier: D is complete) */
        if (dk || dv) { /* pass 2: key-column blocks of each kv head → dK, dV */
#pragma omp for schedule(dynamic, 1)
            for (int job = 0; job < nkv * ncb; job++) /* column 0 (all rows below) first */
                bwd_col_block(&a, &w, job % nkv, job / nkv * cw, cw, D);
        }
    }
    free(scratch), free(D);
}
