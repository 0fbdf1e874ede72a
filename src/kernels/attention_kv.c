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
 *               hd = 64, 0.27 of fp32).
 *   XD_KV_INT4  the row rotated first (below), then per block of 32 values an
 *               fp16 scale d = m/−8, m the rotated value of largest magnitude,
 *               and 4-bit codes q = min(15, ⌊x/d + 8.5⌋), x ≈ (q − 8)·d, as
 *               ggml's Q4_0 (quantize_row_q4_0_ref): the error is at most
 *               d/2, or d for the clamped code 15. Element i < 16 of a block
 *               is the low nibble of the block's byte i, element i + 16 its
 *               high nibble (a short last block keeps all 16 bytes). The row
 *               holds its scales, then 16 bytes per block (18⌈hd/32⌉ bytes:
 *               36 for hd = 64, 0.14 of fp32).
 *               Rotation: keys have a few channels far larger than the rest
 *               (KIVI, Liu et al. 2024, §3), and 4-bit steps sized by them
 *               erase the others: on SmolLM2 with 45 global pairs,
 *               associative recall fell from 1.00 to 0.55 with plain 4-bit
 *               keys (values alone in 4 bits: 1.00). An orthonormal
 *               Walsh–Hadamard rotation H spreads those channels over the
 *               whole row before rounding (QuaRot, Ashkboos et al. 2024,
 *               §4): each run of 64 values (the last run shorter, split into
 *               powers of two) is replaced by H_n·x/√n, with H_n the n×n
 *               Sylvester–Hadamard matrix, H_n² = n·I. Attention is unchanged
 *               by it, q·k = (Hq)·(Hk) and Σ p_j v_j = H(Σ p_j Hv_j), so the
 *               kernel rotates the queries, reads rotated rows and rotates
 *               its outputs back; xd_kv_row_load rotates a row back too.
 *   XD_KV_K8V4  keys as XD_KV_INT8, values as XD_KV_INT4 (104 bytes per
 *               position for hd = 64, against 72 for int4 and 136 for int8):
 *               the keys carry int4's loss (on SmolLM2's trained student
 *               with 45 global pairs, 80 examples, associative recall is
 *               0.8625 in fp32, 0.8375 with int8 keys and int4 values, 0.75
 *               in int4; bench/RESULTS.md).
 * The row functions below take a row type (F32, BF16, INT8, INT4); a cache's
 * keys and values have the row types xd_kv_key_type and xd_kv_value_type of
 * its dtype. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/f16.h"
#include "kernels.h"
#include "vmath.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

enum { QBLK = 32, CHUNK = 512, RUN = 64 };

/* the decoding loop's helpers: inlined into it, so that hd = 64 gives loops of known length */
#define XD_HOT static inline __attribute__((always_inline))

/* x ← H_n·x/√n for n a power of two (the fast Walsh–Hadamard transform: log2 n rounds of
 * sums and differences of pairs h apart); its own inverse. */
static void fwht(float *x, int n) {
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) x[i] *= s;
}

/* The int4 rotation of a row of hd values (hd even), in place: runs of RUN values, the
 * last one cut into powers of two, largest first. Its own inverse. */
static void rotate_row(float *x, int hd) {
    for (int at = 0; at < hd;) {
        int n = RUN;
        while (n > hd - at) n /= 2;
        fwht(x + at, n);
        at += n;
    }
}

/* rows [n][hd] rotated in place (queries before, outputs after an int4 attention) */
static void rotate_rows(float *x, int64_t n, int hd) {
    for (int64_t j = 0; j < n; j++) rotate_row(x + j * hd, hd);
}

static int n_blocks(int hd) { return (hd + QBLK - 1) / QBLK; }

int xd_kv_key_type(int dtype) { return dtype == XD_KV_K8V4 ? XD_KV_INT8 : dtype; }
int xd_kv_value_type(int dtype) { return dtype == XD_KV_K8V4 ? XD_KV_INT4 : dtype; }

size_t xd_kv_row_bytes(int dtype, int hd) {
    switch (dtype) {
    case XD_KV_BF16: return 2 * (size_t)hd;
    case XD_KV_INT8: return (size_t)hd + 2 * (size_t)n_blocks(hd);
    case XD_KV_INT4: return 18 * (size_t)n_blocks(hd);
    default: return 4 * (size_t)hd;
    }
}

void xd_kv_row_store(int dtype, void *dst, const float *x, int hd) {
    if (dtype == XD_KV_F32) { memcpy(dst, x, (size_t)hd * sizeof(float)); return; }
    if (dtype == XD_KV_BF16) { xd_fp32_to_bf16_n(dst, x, (size_t)hd); return; }
    int nb = n_blocks(hd);
    uint16_t *d = dst;
    if (dtype == XD_KV_INT4) {
        uint8_t *qs = (uint8_t *)(d + nb);
        memset(qs, 0, 16 * (size_t)nb);
        float r[RUN];
        for (int r0 = 0; r0 < hd; r0 += RUN) { /* one run: rotated, then its blocks */
            int rn = r0 + RUN < hd ? RUN : hd - r0;
            memcpy(r, x + r0, (size_t)rn * sizeof(float));
            rotate_row(r, rn); /* the same cuts as rotate_row(x, hd): runs start at r0 */
            for (int i0 = 0; i0 < rn; i0 += QBLK) {
                int i1 = i0 + QBLK < rn ? i0 + QBLK : rn, b = (r0 + i0) / QBLK;
                float m = 0;
                for (int i = i0; i < i1; i++)
                    if (fabsf(r[i]) > fabsf(m)) m = r[i];
                float s = m / -8.0f, inv = s != 0 ? 1.0f / s : 0.0f;
                d[b] = xd_fp32_to_fp16(s);
                for (int i = i0; i < i1; i++) {
                    int c = (int)(r[i] * inv + 8.5f); /* r·inv ∈ [−8, 8] */
                    c = c > 15 ? 15 : c;
                    qs[16 * b + (i - i0) % 16] |= (uint8_t)(c << ((i - i0) / 16 * 4));
                }
            }
        }
        return;
    }
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

/* One int4 block of len ≤ 32 values: y[i] = sc·(q_i − 8), q_i the low nibble of p[i] for
 * i < 16, the high nibble of p[i − 16] after. A full block takes the AVX2 path where there is
 * one, four runs of 8 at a time, as fma(q, sc, −8·sc): −8·sc is exact, so the one rounding of
 * q·sc − 8·sc gives the same value as the rounding of (q − 8)·sc. */
static inline void q4_block(float *y, const uint8_t *p, float sc, int len) {
#if defined(__AVX2__) && defined(__FMA__)
    if (len == QBLK) {
        const __m128i m = _mm_set1_epi8(15), b = _mm_loadu_si128((const __m128i *)p);
        const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        const __m256 s = _mm256_set1_ps(sc), off = _mm256_set1_ps(-8.0f * sc);
#define XD_Q4_PART(j, v) \
    _mm256_storeu_ps(y + 8 * (j), _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), s, off))
        XD_Q4_PART(0, lo);
        XD_Q4_PART(1, _mm_srli_si128(lo, 8));
        XD_Q4_PART(2, hi);
        XD_Q4_PART(3, _mm_srli_si128(hi, 8));
#undef XD_Q4_PART
        return;
    }
#endif
    for (int i = 0; i < len && i < 16; i++) y[i] = sc * (float)((p[i] & 15) - 8);
    for (int i = 16; i < len; i++) y[i] = sc * (float)((p[i - 16] >> 4) - 8);
}

/* One int8 block of len ≤ 32 values: y[i] = sc·q_i; a full block in four runs of 8 where
 * there is AVX2 (the same products). */
static inline void q8_block(float *y, const int8_t *q, float sc, int len) {
#if defined(__AVX2__)
    if (len == QBLK) {
        const __m256 s = _mm256_set1_ps(sc);
        for (int j = 0; j < 4; j++) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(q + 8 * j));
            __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
            _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(f, s));
        }
        return;
    }
#endif
    for (int i = 0; i < len; i++) y[i] = sc * (float)q[i];
}

/* n rows of hd values, stride bytes apart, widened to fp32 (dst: [n][hd]); int4 rows stay
 * rotated. */
XD_HOT void load_rows(int dtype, float *dst, const char *src, size_t stride, int64_t n, int hd) {
    if (dtype == XD_KV_F32) {
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + j * hd, src + (size_t)j * stride, (size_t)hd * sizeof(float));
    } else if (dtype == XD_KV_BF16) {
        for (int64_t j = 0; j < n; j++)
            xd_bf16_to_fp32_n(dst + j * hd, src + (size_t)j * stride, (size_t)hd);
    } else if (dtype == XD_KV_INT4) {
        int nb = n_blocks(hd);
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *d = (const void *)(src + (size_t)j * stride);
            const uint8_t *qs = (const uint8_t *)(d + nb);
            float *y = dst + j * hd;
            for (int b = 0; b < nb; b++) {
                int i0 = b * QBLK, len = i0 + QBLK < hd ? QBLK : hd - i0;
                q4_block(y + i0, qs + 16 * b, xd_fp16_to_fp32(d[b]), len);
            }
        }
    } else {
        int nb = n_blocks(hd);
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *d = (const void *)(src + (size_t)j * stride);
            const int8_t *q = (const int8_t *)(d + nb);
            float *y = dst + j * hd;
            for (int b = 0; b < nb; b++) {
                int i0 = b * QBLK, i1 = i0 + QBLK < hd ? i0 + QBLK : hd;
                q8_block(y + i0, q + i0, xd_fp16_to_fp32(d[b]), i1 - i0);
            }
        }
    }
}

void xd_kv_row_load(int dtype, float *dst, const void *src, int hd) {
    load_rows(dtype, dst, src, 0, 1, hd);
    if (dtype == XD_KV_INT4) rotate_row(dst, hd);
}

/* Decoding reads the cache in blocks of SUB rows widened to fp32 (SUB·hd floats: 4 KB at
 * hd = 64, in L1), then serves every query head of the KV group from them. */
enum { SUB = 16, SPLIT_MIN = 1024 };

#if defined(__AVX2__) && defined(__FMA__)
/* the sums of each of eight vectors' lanes, as one vector: lane r = Σ a[r] */
static inline __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                           __m256 a6, __m256 a7) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
#endif

/* s[h·ld + j] = scale · q_h · x_j for heads h < G and fp32 rows j < m, xs floats apart. */
XD_HOT void block_scores(float *s, size_t ld, const float *q, int G, const float *x, size_t xs,
                         int m, int hd, float scale) {
    for (int h = 0; h < G; h++) {
        const float *qh = q + (size_t)h * hd;
        float *sh = s + (size_t)h * ld;
        int j = 0;
#if defined(__AVX2__) && defined(__FMA__)
        if (hd % 8 == 0) /* eight rows at a time, one accumulator each */
            for (; j + 8 <= m; j += 8) {
                const float *r = x + (size_t)j * xs;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
                       a6 = a0, a7 = a0;
                for (int i = 0; i < hd; i += 8) {
                    __m256 qv = _mm256_loadu_ps(qh + i);
                    a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + i), a0);
                    a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 1 * xs + i), a1);
                    a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 2 * xs + i), a2);
                    a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 3 * xs + i), a3);
                    a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 4 * xs + i), a4);
                    a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 5 * xs + i), a5);
                    a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 6 * xs + i), a6);
                    a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r + 7 * xs + i), a7);
                }
                _mm256_storeu_ps(sh + j, _mm256_mul_ps(_mm256_set1_ps(scale),
                                                       hsum8(a0, a1, a2, a3, a4, a5, a6, a7)));
            }
#endif
        for (; j < m; j++) {
            float d = 0.0f;
            for (int i = 0; i < hd; i++) d += qh[i] * x[(size_t)j * xs + i];
            sh[j] = scale * d;
        }
    }
}

/* acc_h += Σ_j p[h·ld + j] · x_j for heads h < G (acc: [G][hd], x: m fp32 rows xs floats
 * apart); runs of 64 output values stay in registers across the rows. */
XD_HOT void block_wsum(float *acc, const float *p, size_t ld, int G, const float *x, size_t xs,
                       int m, int hd) {
    for (int h = 0; h < G; h++) {
        const float *ph = p + (size_t)h * ld;
        float *ah = acc + (size_t)h * hd;
        int d0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
        for (; d0 + 64 <= hd; d0 += 64) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_ps(ah + d0 + 8 * t);
            for (int j = 0; j < m; j++) {
                __m256 pj = _mm256_set1_ps(ph[j]);
                const float *xr = x + (size_t)j * xs + d0;
                for (int t = 0; t < 8; t++)
                    r[t] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(xr + 8 * t), r[t]);
            }
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(ah + d0 + 8 * t, r[t]);
        }
#endif
        for (int j = 0; j < m; j++)
            for (int d = d0; d < hd; d++) ah[d] += ph[j] * x[(size_t)j * xs + d];
    }
}

/* One job of xd_attention_spans: KV head g over rows j0 … j0+m−1 of span sp, its partial
 * results in slot c (the job's chunk counted over all spans); x, sc: the thread's buffers. */
XD_HOT void chunk_job(const xd_kv_span *sp, int64_t j0, int m, int g, int64_t c,
                      const float *q, int n_head, int n_kv, int hd, float scale, float *x,
                      float *sc, float *part, float *cmax, float *csum) {
    int group = n_head / n_kv, kt = sp->kt, vt = sp->vt;
    size_t krb = xd_kv_row_bytes(kt, hd), rb = xd_kv_row_bytes(vt, hd);
    const char *krows = (const char *)sp->k + (size_t)j0 * sp->kstride + (size_t)g * krb;
    const char *vrows = (const char *)sp->v + (size_t)j0 * sp->vstride + (size_t)g * rb;
    size_t at = (size_t)c * n_head + (size_t)g * group; /* the group's first head */
    /* fp32 rows are read where they are; the others widened SUB at a time into x */
    for (int j = 0; j < m; j += SUB) {
        int n = m - j < SUB ? m - j : SUB;
        const float *qg = q + (size_t)g * group * hd;
        if (kt == XD_KV_F32) {
            block_scores(sc + j, CHUNK, qg, group, (const float *)(krows + (size_t)j * sp->kstride),
                         sp->kstride / sizeof(float), n, hd, scale);
        } else {
            load_rows(kt, x, krows + (size_t)j * sp->kstride, sp->kstride, n, hd);
            block_scores(sc + j, CHUNK, qg, group, x, (size_t)hd, n, hd, scale);
        }
    }
    for (int h = 0; h < group; h++) {
        float *sh = sc + (size_t)h * CHUNK, mx = xd_max_of(sh, m, sh[0]);
        for (int j = 0; j < m; j++) sh[j] = xd_exp_le0(sh[j] - mx);
        cmax[at + h] = mx;
        csum[at + h] = (float)xd_sum_d(sh, m);
    }
    float *acc = part + at * hd;
    memset(acc, 0, (size_t)group * hd * sizeof(float));
    for (int j = 0; j < m; j += SUB) {
        int n = m - j < SUB ? m - j : SUB;
        if (vt == XD_KV_F32) {
            block_wsum(acc, sc + j, CHUNK, group, (const float *)(vrows + (size_t)j * sp->vstride),
                       sp->vstride / sizeof(float), n, hd);
        } else {
            load_rows(vt, x, vrows + (size_t)j * sp->vstride, sp->vstride, n, hd);
            block_wsum(acc, sc + j, CHUNK, group, x, (size_t)hd, n, hd);
        }
    }
}

/* One query per head (decoding) over the rows of nspan spans, split into (KV head, chunk of
 * `chunk` positions of one span) jobs in one pass (split-K "flash decoding": Dao et al. 2023).
 * A job widens its chunk's key rows SUB at a time (block_scores), takes each head's softmax
 * over the chunk alone, m = max_j s_j, p_j = e^(s_j − m), l = Σ p_j, then widens the value
 * rows (block_wsum: a = Σ p_j v_j). Each stored byte is read once and the widened rows never
 * leave L1. The chunks combine exactly as one softmax: with M = max_c m_c,
 *   out = Σ_c e^(m_c − M) a_c / Σ_c e^(m_c − M) l_c,
 * summed in chunk order (the same result whatever the thread count). */
int xd_attention_spans(float *out, const float *q, const xd_kv_span *spans, int nspan,
                       int n_head, int n_kv, int hd, int chunk) {
    int group = n_head / n_kv;
    if (chunk < 1 || chunk > CHUNK) chunk = CHUNK;
    int64_t nc = 0, rows = 0;
    for (int s = 0; s < nspan; s++) {
        nc += (spans[s].rows + chunk - 1) / chunk;
        rows += spans[s].rows;
    }
    if (nc == 0) { /* nothing to attend to */
        memset(out, 0, (size_t)n_head * hd * sizeof(float));
        return 0;
    }
    int64_t jobs = nc * n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    int nth = omp_get_max_threads();
    /* one block: per chunk and head its sums a [nc][n_head][hd], max m and total l
     * [nc][n_head]; per thread SUB widened rows and the chunk's scores [group][CHUNK] */
    size_t np = (size_t)nc * n_head * hd, nml = (size_t)nc * n_head;
    size_t per_thread = (size_t)SUB * hd + (size_t)group * CHUNK;
    float *part = malloc((np + 2 * nml + (size_t)nth * per_thread) * sizeof(float));
    if (!part) return -1;
    float *cmax = part + np, *csum = cmax + nml, *tbuf = csum + nml;
    int par = rows * n_head >= 4096 && jobs > 1;
#pragma omp parallel if (par)
    {
        float *x = tbuf + (size_t)omp_get_thread_num() * per_thread, *sc = x + (size_t)SUB * hd;
        /* round robin: a span's jobs are spread over the threads (the results do not depend
         * on who runs a job) */
#pragma omp for schedule(static, 1)
        for (int64_t job = 0; job < jobs; job++) {
            int g = (int)(job % n_kv);
            int64_t c = job / n_kv, cs = c;
            int s = 0;
            while ((spans[s].rows + chunk - 1) / chunk <= cs) cs -= (spans[s++].rows + chunk - 1) / chunk;
            int64_t j0 = cs * chunk;
            int m = (int)(j0 + chunk < spans[s].rows ? chunk : spans[s].rows - j0);
            if (hd == 64) /* the usual head size: loops of known length */
                chunk_job(&spans[s], j0, m, g, c, q, n_head, n_kv, 64, scale, x, sc, part, cmax, csum);
            else
                chunk_job(&spans[s], j0, m, g, c, q, n_head, n_kv, hd, scale, x, sc, part, cmax, csum);
        }
    }
    for (int h = 0; h < n_head; h++) {
        float mx = cmax[h];
        for (int64_t c = 1; c < nc; c++) {
            float mc = cmax[(size_t)c * n_head + h];
            mx = mc > mx ? mc : mx;
        }
        float *o = out + (size_t)h * hd;
        memset(o, 0, (size_t)hd * sizeof(float));
        double l = 0;
        for (int64_t c = 0; c < nc; c++) {
            size_t at = (size_t)c * n_head + h;
            float w = xd_exp_le0(cmax[at] - mx);
            const float *pc = part + at * hd;
            l += (double)w * csum[at];
            for (int d = 0; d < hd; d++) o[d] += w * pc[d];
        }
        float inv = (float)(1.0 / l);
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
    free(part);
    return 0;
}

int xd_attention_kv(float *out, const float *q, const void *k, const void *v, int n,
                    int64_t pos0, int n_head, int n_kv, int hd, int dtype) {
    int64_t T = pos0 + n;
    int kt = xd_kv_key_type(dtype), vt = xd_kv_value_type(dtype);
    /* fp32 rows: the split-K decoding kernel from SPLIT_MIN positions on (below, its
     * chunks are too few to share between threads and the per-head sgemv is faster:
     * bench_infer, SmolLM2, 2 threads: 6.6 vs 7.0 ms a token at 128, equal at 1024,
     * 28.4 vs 24.6 at 4096) */
    if (kt == XD_KV_F32 && vt == XD_KV_F32 && (n > 1 || T < SPLIT_MIN))
        return xd_attention(out, q, k, v, n, pos0, n_head, n_kv, hd);
    size_t nq = (size_t)n * n_head * hd;
    float *qr = NULL; /* int4 keys: the queries rotated as the key rows were */
    if (kt == XD_KV_INT4) {
        if (!(qr = malloc(nq * sizeof(float)))) return -1;
        memcpy(qr, q, nq * sizeof(float));
        rotate_rows(qr, (int64_t)n * n_head, hd);
        q = qr;
    }
    int rc;
    if (n == 1) {
        xd_kv_span sp = {k, v, T, xd_kv_row_bytes(kt, hd) * (size_t)n_kv,
                         xd_kv_row_bytes(vt, hd) * (size_t)n_kv, kt, vt};
        rc = xd_attention_spans(out, q, &sp, 1, n_head, n_kv, hd, CHUNK);
    } else {
        /* prefill: widen the cache once ([T][n_kv] rows → [T][n_kv·hd] floats), then the
         * sgemm path */
        size_t kvd = (size_t)n_kv * hd;
        float *kf = malloc((size_t)T * kvd * 2 * sizeof(float));
        if (kf) {
            float *vf = kf + (size_t)T * kvd;
            load_rows(kt, kf, k, xd_kv_row_bytes(kt, hd), T * n_kv, hd);
            load_rows(vt, vf, v, xd_kv_row_bytes(vt, hd), T * n_kv, hd);
            rc = xd_attention(out, q, kf, vf, n, pos0, n_head, n_kv, hd);
            free(kf);
        } else {
            rc = -1;
        }
    }
    if (rc == 0 && vt == XD_KV_INT4) /* back from the int4 value rows' basis */
        rotate_rows(out, (int64_t)n * n_head, hd);
    free(qr);
    return rc;
}
