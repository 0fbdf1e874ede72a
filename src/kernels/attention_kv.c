/* Decoding-state key/value rows in a compact type (xd_kv_dtype), and causal
 * attention over a cache held in that type (kernels.h, "attention over a
 * compact cache"). The global heads of a student keep every position's key
 * and value (docs/design.md, "Global heads"), so their bytes per row set the
 * state's size at long context:
 *   XD_KV_F32   hd floats (4·hd bytes)
 *   XD_KV_BF16  hd bf16 values, rounded to nearest even (2·hd bytes)
 *   XD_KV_INT8  per block of 32 values (the last block of a row may be
 *               shorter): an fp16 scale d = max|x|/127 and int8 q =
 *               round(x/d), x ≈ q·d, as ggml's Q8_0 (ggml-quants.c,
 *               quantize_row_q8_0_ref); the row holds its ⌈hd/32⌉ scales
 *               first, then its hd int8 values (hd + 2⌈hd/32⌉ bytes: 68 for
 *               hd = 64, 0.27 of fp32). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/f16.h"
#include "kernels.h"

enum { QBLK = 32, CHUNK = 512 };

static int n_blocks(int hd) { return (hd + QBLK - 1) / QBLK; }

size_t xd_kv_row_bytes(int dtype, int hd) {
    switch (dtype) {
    case XD_KV_BF16: return 2 * (size_t)hd;
    case XD_KV_INT8: return (size_t)hd + 2 * (size_t)n_blocks(hd);
    default: return 4 * (size_t)hd;
    }
}

void xd_kv_row_store(int dtype, void *dst, const float *x, int hd) {
    if (dtype == XD_KV_F32) { memcpy(dst, x, (size_t)hd * sizeof(float)); return; }
    if (dtype == XD_KV_BF16) { xd_fp32_to_bf16_n(dst, x, (size_t)hd); return; }
    int nb = n_blocks(hd);
    uint16_t *d = dst;
    int8_t *q = (int8_t *)(d + nb);
    for (int b = 0; b < nb; b++) {
        int i0 = b * QBLK, i1 = i0 + QBLK < hd ? i0 + QBLK : hd;
        float amax = 0;
        for (int i = i0; i < i1; i++) amax = fmaxf(amax, fabsf(x[i]));
        float s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0.0f;
        d[b] = xd_fp32_to_fp16(s);
        for (int i = i0; i < i1; i++) q[i] = (int8_t)roundf(x[i] * inv); /* |x·inv| ≤ 127 */
    }
}

/* n rows of hd values, stride bytes apart, widened to fp32 (dst: [n][hd]). */
static inline void load_rows(int dtype, float *dst, const char *src, size_t stride, int64_t n,
                             int hd) {
    if (dtype == XD_KV_F32) {
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + j * hd, src + (size_t)j * stride, (size_t)hd * sizeof(float));
    } else if (dtype == XD_KV_BF16) {
        for (int64_t j = 0; j < n; j++)
            xd_bf16_to_fp32_n(dst + j * hd, src + (size_t)j * stride, (size_t)hd);
    } else {
        int nb = n_blocks(hd);
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *d = (const void *)(src + (size_t)j * stride);
            const int8_t *q = (const int8_t *)(d + nb);
            float *y = dst + j * hd;
            for (int b = 0; b < nb; b++) {
                int i0 = b * QBLK, i1 = i0 + QBLK < hd ? i0 + QBLK : hd;
                float sc = xd_fp16_to_fp32(d[b]);
                for (int i = i0; i < i1; i++) y[i] = sc * (float)q[i];
            }
        }
    }
}

void xd_kv_row_load(int dtype, float *dst, const void *src, int hd) {
    load_rows(dtype, dst, src, 0, 1, hd);
}

/* One query per head (decoding) over T stored rows. Work is split into
 * (KV head, chunk of CHUNK positions) jobs; a job widens its chunk's rows once
 * (into a per-thread buffer that stays in cache) and serves every query head
 * of the group with one sgemm for the scores and one for the weighted sum;
 * the chunks' sums are added in chunk order afterwards. Inside the parallel
 * region OpenBLAS runs single-threaded. */
static int one_position(float *out, const float *q, const void *k, const void *v, int64_t T,
                        int n_head, int n_kv, int hd, int dtype) {
    int group = n_head / n_kv;
    size_t rb = xd_kv_row_bytes(dtype, hd), stride = rb * (size_t)n_kv;
    int64_t nc = (T + CHUNK - 1) / CHUNK, jobs = nc * n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    int nth = omp_get_max_threads();
    /* one block: scores [n_head][T], the chunks' sums [nc][n_head][hd], a row buffer per thread */
    size_t ns = (size_t)n_head * (size_t)T, np = (size_t)nc * n_head * hd;
    float *s = malloc((ns + np + (size_t)nth * CHUNK * (size_t)hd) * sizeof(float));
    if (!s) return -1;
    float *part = s + ns, *rowbuf = part + np;
    int par = T * n_head >= 4096;
#pragma omp parallel if (par)
    {
        float *x = rowbuf + (size_t)omp_get_thread_num() * CHUNK * hd;
#pragma omp for schedule(static)
        for (int64_t job = 0; job < jobs; job++) {
            int g = (int)(job % n_kv);
            int64_t j0 = job / n_kv * CHUNK, m = j0 + CHUNK < T ? CHUNK : T - j0;
            load_rows(dtype, x, (const char *)k + (size_t)j0 * stride + (size_t)g * rb, stride, m, hd);
            /* s[h][j0 … j0+m) = scale · q_h · k_j for the group's heads h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, group, (int)m, hd, scale,
                        q + (size_t)g * group * hd, hd, x, hd, 0.0f,
                        s + (size_t)g * group * T + j0, (int)T);
        }
#pragma omp for schedule(static)
        for (int h = 0; h < n_head; h++) xd_softmax(s + (size_t)h * T, (int)T);
#pragma omp for schedule(static)
        for (int64_t job = 0; job < jobs; job++) {
            int g = (int)(job % n_kv);
            int64_t c = job / n_kv, j0 = c * CHUNK, m = j0 + CHUNK < T ? CHUNK : T - j0;
            load_rows(dtype, x, (const char *)v + (size_t)j0 * stride + (size_t)g * rb, stride, m, hd);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, group, hd, (int)m, 1.0f,
                        s + (size_t)g * group * T + j0, (int)T, x, hd, 0.0f,
                        part + ((size_t)c * n_head + (size_t)g * group) * hd, hd);
        }
    }
    for (int h = 0; h < n_head; h++) {
        float *o = out + (size_t)h * hd;
        memcpy(o, part + (size_t)h * hd, (size_t)hd * sizeof(float));
        for (int64_t c = 1; c < nc; c++) {
            const float *pc = part + ((size_t)c * n_head + h) * hd;
            for (int d = 0; d < hd; d++) o[d] += pc[d];
        }
    }
    free(s);
    return 0;
}

int xd_attention_kv(float *out, const float *q, const void *k, const void *v, int n,
                    int64_t pos0, int n_head, int n_kv, int hd, int dtype) {
    int64_t T = pos0 + n;
    if (dtype == XD_KV_F32) return xd_attention(out, q, k, v, n, pos0, n_head, n_kv, hd);
    if (n == 1) return one_position(out, q, k, v, T, n_head, n_kv, hd, dtype);
    /* prefill: widen the cache once ([T][n_kv] rows → [T][n_kv·hd] floats), then the
     * sgemm path */
    size_t kvd = (size_t)n_kv * hd;
    float *kf = malloc((size_t)T * kvd * 2 * sizeof(float));
    if (!kf) return -1;
    float *vf = kf + (size_t)T * kvd;
    load_rows(dtype, kf, k, xd_kv_row_bytes(dtype, hd), T * n_kv, hd);
    load_rows(dtype, vf, v, xd_kv_row_bytes(dtype, hd), T * n_kv, hd);
    int rc = xd_attention(out, q, kf, vf, n, pos0, n_head, n_kv, hd);
    free(kf);
    return rc;
}
