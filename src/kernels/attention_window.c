/* Sliding-window + sink attention for student inference (docs/design.md, "SWA
 * branch"): each query sees the sink keys (positions 0 … S−1) and the keys
 * of the last W positions up to its own, with the teacher's scale 1/√hd.
 * Keys come in two segments so that a decoding state of constant size can
 * be passed without copying (see xd_attention_sinkwin in kernels.h). Work is
 * split into (head, block of queries) jobs; each job scores its block
 * against the sink segment and the window span it can see with sgemm,
 * masks, applies softmax and multiplies by V. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

enum { QB = 32, DECODE_CHUNK = 128 };

/* The run's rows that queries at positions p0 … p1 may see: [*lo, *hi], from
 * max(p0 − W + 1, from, sinks, r0) (the window of the first query, widened back to `from`)
 * to min(p1, r0 + nr − 1); empty when *hi < *lo. */
static void visible_run(int64_t p0, int64_t p1, int window, int sinks, int64_t from, int64_t r0,
                        int64_t nr, int64_t *lo, int64_t *hi) {
    *lo = p0 - window + 1 < from ? p0 - window + 1 : from;
    if (*lo < r0) *lo = r0;
    if (*lo < sinks) *lo = sinks;
    *hi = p1 < r0 + nr - 1 ? p1 : r0 + nr - 1;
}

/* One query (decoding): every key it can see lies in two spans, the sinks j ≤ p and the run's
 * rows from max(p − W + 1, from, sinks, r0) to p, so it needs no mask; the split-K decoding
 * kernel reads them where they are, in chunks of DECODE_CHUNK rows (a window of 512 gives
 * n_kv·4 jobs to share between threads). */
int xd_attention_sinkwin_one(float *out, const float *q, int64_t p, const float *ks,
                             const float *vs, int ns, const void *kr, const void *vr, int rtype,
                             int64_t r0, int64_t nr, int n_head, int n_kv, int hd, int window,
                             int sinks, int64_t from) {
    size_t stride = (size_t)n_kv * hd * sizeof(float);
    size_t rstride = (size_t)n_kv * xd_kv_row_bytes(rtype, hd);
    int64_t lo, hi;
    visible_run(p, p, window, sinks, from, r0, nr, &lo, &hi);
    xd_kv_span sp[2];
    int n = 0;
    int64_t nsv = ns < p + 1 ? ns : p + 1; /* sink j is visible iff j ≤ p */
    if (nsv > 0) sp[n++] = (xd_kv_span){ks, vs, nsv, stride, stride, XD_KV_F32, XD_KV_F32};
    if (hi >= lo) {
        size_t off = (size_t)(lo - r0) * rstride;
        sp[n++] = (xd_kv_span){(const char *)kr + off, (const char *)vr + off, hi - lo + 1,
                               rstride, rstride, rtype, rtype};
    }
    return xd_attention_spans(out, q, sp, n, n_head, n_kv, hd, DECODE_CHUNK);
}

int xd_attention_sinkwin(float *out, const float *q, int n, int64_t qpos0, const float *ks,
                         const float *vs, int ns, const float *kr, const float *vr, int64_t r0,
                         int64_t nr, int n_head, int n_kv, int hd, int window, int sinks,
                         int64_t from) {
    if (n == 1)
        return xd_attention_sinkwin_one(out, q, qpos0, ks, vs, ns, kr, vr, XD_KV_F32, r0, nr,
                                        n_head, n_kv, hd, window, sinks, from);
    int qd = n_head * hd, kvd = n_kv * hd, group = n_head / n_kv;
    int nblk = (n + QB - 1) / QB;
    float scale = 1.0f / sqrtf((float)hd);
    /* a block's columns: ns sinks + the window span of QB queries, + the rows
     * before the last query's window from `from` on */
    int64_t ext = qpos0 + n - window > from ? qpos0 + n - window - from : 0;
    int64_t cols_max = (int64_t)ns + (int64_t)window + QB + ext;
    int nth = omp_get_max_threads();
    float *scratch = malloc((size_t)nth * QB * (size_t)cols_max * sizeof(float));
    if (!scratch) return -1;
#pragma omp parallel
    {
        float *S = scratch + (size_t)omp_get_thread_num() * QB * (size_t)cols_max;
#pragma omp for schedule(dynamic)
        for (int job = 0; job < n_head * nblk; job++) {
            int h = job / nblk, b = job % nblk;
            int i0 = b * QB, m = n - i0 < QB ? n - i0 : QB;
            int64_t p0 = qpos0 + i0, p1 = p0 + m - 1;
            /* the run keys any query of the block may see: positions [lo, hi] */
            int64_t lo, hi;
            visible_run(p0, p1, window, sinks, from, r0, nr, &lo, &hi);
            int64_t nw = hi >= lo ? hi - lo + 1 : 0;
            int64_t cols = ns + nw;
            const float *Q = q + (int64_t)i0 * qd + (int64_t)h * hd;
            int64_t ko = (int64_t)(h / group) * hd;
            const float *KW = kr + (lo - r0) * kvd + ko, *VW = vr + (lo - r0) * kvd + ko;
            float *O = out + (int64_t)i0 * qd + (int64_t)h * hd;
            if (ns)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, ns, hd, scale, Q, qd,
                            ks + ko, kvd, 0.0f, S, (int)cols);
            if (nw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)nw, hd, scale, Q, qd,
                            KW, kvd, 0.0f, S + ns, (int)cols);
            for (int r = 0; r < m; r++) {
                int64_t p = p0 + r;
                float *row = S + (int64_t)r * cols;
                for (int j = 0; j < ns; j++) /* sink key at position j */
                    if (j > p) row[j] = -INFINITY;
                for (int64_t j = 0; j < nw; j++) { /* window key at position lo + j */
                    int64_t kp = lo + j;
                    if (kp > p || (p - kp >= window && kp < from)) row[ns + j] = -INFINITY;
                }
                xd_softmax(row, (int)cols);
            }
            if (ns)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, ns, 1.0f, S,
                            (int)cols, vs + ko, kvd, 0.0f, O, qd);
            if (nw)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, (int)nw, 1.0f,
                            S + ns, (int)cols, VW, kvd, ns ? 1.0f : 0.0f, O, qd);
            if (!ns && !nw)
                for (int r = 0; r < m; r++) memset(O + (int64_t)r * qd, 0, (size_t)hd * sizeof(float));
        }
    }
    free(scratch);
    return 0;
}
