/* Causal grouped-query attention over a KV cache, softmax(q·kᵀ/√hd)·v.
 * Work is split into (head, block of queries) jobs across OpenMP threads;
 * each job forms its score block with one sgemm (a dot-product loop for a
 * single query), masks the future, applies softmax and multiplies by V. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

enum { QBLOCK = 64 };

static void one_query(float *o, const float *q, const float *k, const float *v, float *s,
                      int64_t T, int kvd, int hd, float scale) {
    /* scores = scale · K q and o = Vᵀ p as two sgemv calls (vectorised; inside
     * the parallel region OpenBLAS runs them single-threaded) */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)T, hd, scale, k, kvd, q, 1, 0.0f, s, 1);
    xd_softmax(s, (int)T);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)T, hd, 1.0f, v, kvd, s, 1, 0.0f, o, 1);
}

int xd_attention(float *out, const float *q, const float *k, const float *v, int n,
                  int64_t pos0, int n_head, int n_kv, int hd) {
    int qd = n_head * hd, kvd = n_kv * hd, group = n_head / n_kv;
    int nblk = (n + QBLOCK - 1) / QBLOCK;
    int64_t T = pos0 + n;
    float scale = 1.0f / sqrtf((float)hd);
    int nth = omp_get_max_threads();
    float *scores = malloc((size_t)nth * QBLOCK * (size_t)T * sizeof(float));
    if (!scores) return -1;
#pragma omp parallel
    {
        float *S = scores + (size_t)omp_get_thread_num() * QBLOCK * (size_t)T;
#pragma omp for schedule(dynamic)
        for (int job = 0; job < n_head * nblk; job++) {
            int h = job / nblk, b = job % nblk;
            int i0 = b * QBLOCK, m = n - i0 < QBLOCK ? n - i0 : QBLOCK;
            int64_t Tb = pos0 + i0 + m; /* keys the last query of the block sees */
            const float *Q = q + (int64_t)i0 * qd + (int64_t)h * hd;
            const float *K = k + (int64_t)(h / group) * hd, *V = v + (int64_t)(h / group) * hd;
            float *O = out + (int64_t)i0 * qd + (int64_t)h * hd;
            if (m == 1) {
                one_query(O, Q, K, V, S, Tb, kvd, hd, scale);
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)Tb, hd, scale, Q, qd, K,
                        kvd, 0.0f, S, (int)Tb);
            for (int r = 0; r < m; r++) {
                int64_t len = pos0 + i0 + r + 1; /* causal: keys 0..pos */
                float *row = S + (int64_t)r * Tb;
                xd_softmax(row, (int)len);
                memset(row + len, 0, (size_t)(Tb - len) * sizeof(float));
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, (int)Tb, 1.0f, S,
                        (int)Tb, V, kvd, 0.0f, O, qd);
        }
    }
    free(scores);
    return 0;
}
